"""The access policy: one table from matched route to who may call it.

Decisions use the route template aiohttp matched (``resource.canonical``),
with ComfyUI's ``/api`` twin prefix removed, so ``/x``, ``/api/x``, ``//x``
or ``/API/x`` cannot reach a handler under a different rule. Deny by default:
anything not listed needs a principal in ``require`` mode.
"""

from .principals import Principal

PUBLIC = "public"          # anyone, in every mode
ADMIN = "admin"            # admin only, in every mode
KEY_HOLDER = "key_holder"  # a principal that carries a key
DEFAULT = "default"        # everything else: open in enable, principal in require

ALLOW = "allow"
UNAUTHENTICATED = "unauthenticated"
FORBIDDEN = "forbidden"
NEED_KEY = "need_key"

# (canonical path, method or None for any method) -> class
BUILTIN_RULES = {
    ("/login", "GET"): PUBLIC,
    ("/auth/login", "POST"): PUBLIC,
    ("/auth/logout", "POST"): PUBLIC,
    ("/auth/status", "GET"): PUBLIC,
    ("/keys", None): ADMIN,
    ("/keys/{key_id}", None): ADMIN,
    ("/auth/password", None): ADMIN,
    ("/auth/sessions/end-all", None): ADMIN,
    ("/auth/settings", None): ADMIN,
    ("/usage/all", None): ADMIN,
    ("/audit", None): ADMIN,
    ("/auth/openapi.json", None): ADMIN,
    ("/usage", "GET"): KEY_HOLDER,
}

# Templates aiohttp reports for things that are not one of our routes.
UNMATCHED = None


def canonical_path(template: str | None) -> str | None:
    """Strip ComfyUI's ``/api`` twin prefix from a route template."""
    if template is None:
        return None
    if template.startswith("/api/"):
        return template[4:]
    if template == "/api":
        return "/"
    return template


class AccessPolicy:
    def __init__(self, mode: str, extra_public_paths=()):
        self.mode = mode
        self._rules = dict(BUILTIN_RULES)
        for path in extra_public_paths:
            # An admin-added public path never overrides an admin route.
            if self._rules.get((path, None)) != ADMIN:
                self._rules[(path, "GET")] = PUBLIC
                self._rules[(path, "HEAD")] = PUBLIC

    def classify(self, template: str | None, method: str) -> str:
        """The route class of a matched template (the middleware caches the answer)."""
        path = canonical_path(template)
        if path is None:
            return DEFAULT
        exact = self._rules.get((path, method))
        if exact is None and method == "HEAD":
            exact = self._rules.get((path, "GET"))
        any_method = self._rules.get((path, None))
        # Admin on any method wins over a method-specific public rule.
        if any_method == ADMIN:
            return ADMIN
        return exact or any_method or DEFAULT

    def decide(self, principal: Principal, route_class: str) -> str:
        if route_class == PUBLIC:
            return ALLOW
        if route_class == ADMIN:
            if principal.is_admin:
                return ALLOW
            return UNAUTHENTICATED if principal.is_anonymous else FORBIDDEN
        if route_class == KEY_HOLDER:
            return ALLOW if principal.key is not None else NEED_KEY
        if self.mode == "require" and principal.is_anonymous:
            return UNAUTHENTICATED
        return ALLOW
