"""The access policy: one table from matched route to who may call it.

Decisions use the route template aiohttp matched (``resource.canonical``),
with ComfyUI's ``/api`` twin prefix removed, so ``/x``, ``/api/x``, ``//x``
or ``/API/x`` cannot reach a handler under a different rule. Deny by default:
anything not listed needs a principal in ``require`` mode.
"""

from .principals import Principal

PUBLIC = "public"          # anyone, in every mode
ADMIN = "admin"            # admin only, in every mode
KEYS = "keys"              # key management: admin, or the local bootstrap (non-admin keys only, see keys_api)
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
    ("/auth/setup", "POST"): PUBLIC,
    ("/keys", None): KEYS,
    ("/keys/{key_id}", None): KEYS,
    ("/keys/{key_id}/rotate", None): KEYS,
    ("/auth/password", None): ADMIN,
    ("/auth/sessions/end-all", None): ADMIN,
    ("/audit", None): ADMIN,
    ("/auth/openapi.json", None): ADMIN,
    ("/auth/access", None): ADMIN,
    ("/usage", "GET"): KEY_HOLDER,
}

# Classes a key needs the admin scope for.
ADMIN_CLASSES = frozenset({ADMIN, KEYS})


def canonical_path(template: str | None) -> str | None:
    """Strip ComfyUI's ``/api`` twin prefix from a route template."""
    if template is None:
        return None
    if template.startswith("/api/"):
        return template[4:]
    if template == "/api":
        return "/"
    return template


def is_package_path(path: str) -> bool:
    """True when a path (either twin) reaches one of this package's routes;
    ``{name}`` in a route template stands for any one path segment."""
    parts = canonical_path(path).split("/")
    for rule_path, _ in BUILTIN_RULES:
        rule_parts = rule_path.split("/")
        if len(rule_parts) == len(parts) and all(
                rule_part == part or (rule_part.startswith("{") and part)
                for rule_part, part in zip(rule_parts, parts)):
            return True
    return False


class AccessPolicy:
    def __init__(self, mode: str, extra_public_paths=()):
        self.mode = mode
        self._rules = dict(BUILTIN_RULES)
        for path in extra_public_paths:
            # A public path never opens one of this package's routes (the
            # settings refuse one, see config); this guards callers that skip them.
            if not is_package_path(path):
                self._rules[(canonical_path(path), "GET")] = PUBLIC
                self._rules[(canonical_path(path), "HEAD")] = PUBLIC

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
        if any_method in ADMIN_CLASSES:
            return any_method
        return exact or any_method or DEFAULT

    def decide(self, principal: Principal, route_class: str) -> str:
        if route_class == PUBLIC:
            return ALLOW
        if route_class in ADMIN_CLASSES:
            if principal.is_admin or (route_class == KEYS and principal.is_bootstrap):
                return ALLOW
            return UNAUTHENTICATED if principal.is_anonymous else FORBIDDEN
        if route_class == KEY_HOLDER:
            return ALLOW if principal.key is not None else NEED_KEY
        # The bootstrap principal is anonymous outside key management.
        if self.mode == "require" and not principal.has_identity:
            return UNAUTHENTICATED
        return ALLOW
