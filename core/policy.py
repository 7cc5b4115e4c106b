"""The access policy: from a matched route to who may call it.

Decisions use the route template aiohttp matched (``resource.canonical``),
with ComfyUI's ``/api`` twin prefix removed, so ``/x``, ``/api/x``, ``//x``
or ``/API/x`` cannot reach a handler under a different rule.

Two layers. This package's own routes have classes of their own (below:
public sign-in, admin, key management, the key holder's usage). Every other
route (ComfyUI's, ComfyUI-Manager's, other custom nodes') needs a level
(``core.scopes``): the one ``route_table`` gives it, else the one the
operator wrote in ``COMFYUI_API_AUTH_ROUTE_SCOPES``, else ``admin``: code
nobody classified is operator code. A key below a route's level is refused
(403 ``SCOPE_REQUIRED``) in both modes; in ``require`` mode anything but a
public route needs a principal; in ``enable`` mode the anonymous caller gets
ComfyUI as it was.
"""

from . import route_table
from .principals import Principal
from .scopes import ADMIN_LEVEL, LEVELS, READ

PUBLIC = "public"          # anyone, in every mode
ADMIN = "admin"            # admin only, in every mode
KEYS = "keys"              # key management: admin, or the local bootstrap (non-admin keys only, see keys_api)
KEY_HOLDER = "key_holder"  # a principal that carries a key
COMFY = "comfy"            # everything else: a level (core.scopes) for keys; open in enable, principal in require

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
# The level each of this package's classes asks of a key (a route hook or the
# Bearer fast path compares it with principal.level).
PACKAGE_CLASS_LEVELS = {PUBLIC: 0, ADMIN: ADMIN_LEVEL, KEYS: ADMIN_LEVEL, KEY_HOLDER: LEVELS[READ]}
# A level no principal has: the route's level depends on the request (a
# query rule), so the fast path leaves it to the general one.
PER_REQUEST = ADMIN_LEVEL + 1
# Requests that matched no route (a 404 or 405 is coming): any principal may
# hear that, so a key gets ComfyUI's 404 rather than a refusal.
UNMATCHED_LEVEL = LEVELS[READ]


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


class RouteNeed:
    """What a matched route asks of its caller, worked out once per route."""

    __slots__ = ("route_class", "level", "query_rule", "unclassified")

    def __init__(self, route_class: str, level: int, query_rule=None, unclassified: bool = False):
        self.route_class = route_class
        self.level = level              # the least principal.level a key needs (PER_REQUEST: see query_rule)
        self.query_rule = query_rule    # route_table.QueryRule when the level depends on the query
        self.unclassified = unclassified  # no table and no operator setting knows it: admin level

    def level_for(self, query) -> int:
        """The level this request needs (``query``: its query string's names)."""
        if self.query_rule is None:
            return self.level
        return LEVELS[self.query_rule.route_class(query)]


class AccessPolicy:
    def __init__(self, mode: str, extra_public_paths=(), route_scopes=None):
        self.mode = mode
        self._rules = dict(BUILTIN_RULES)
        for path in extra_public_paths:
            # A public path never opens one of this package's routes (the
            # settings refuse one, see config); this guards callers that skip them.
            if not is_package_path(path):
                self._rules[(canonical_path(path), "GET")] = PUBLIC
                self._rules[(canonical_path(path), "HEAD")] = PUBLIC
        route_scopes = route_scopes or {}
        self._exact_scopes = {path: scope for path, scope in route_scopes.items() if not path.endswith("/")}
        # Longest prefix first, so the most specific one decides.
        self._prefix_scopes = sorted(((path, scope) for path, scope in route_scopes.items() if path.endswith("/")),
                                     key=lambda item: -len(item[0]))

    def classify(self, template: str | None, method: str, static: bool = False) -> RouteNeed:
        """What a matched template asks (the middleware caches the answer per route);
        ``static``: the route is a static mount (page files)."""
        path = canonical_path(template)
        if path is None:
            return RouteNeed(COMFY, UNMATCHED_LEVEL)
        package_class = self._package_class(path, method)
        if package_class is not None:
            return RouteNeed(package_class, PACKAGE_CLASS_LEVELS[package_class])
        operator_scope = self._operator_scope(path)
        if operator_scope is not None:
            return RouteNeed(COMFY, LEVELS[operator_scope])
        found = route_table.lookup(path, method, static=static)
        if found is None:
            return RouteNeed(COMFY, ADMIN_LEVEL, unclassified=True)
        if isinstance(found, route_table.QueryRule):
            return RouteNeed(COMFY, PER_REQUEST, query_rule=found)
        return RouteNeed(COMFY, LEVELS[found.route_class])

    def _package_class(self, path: str, method: str) -> str | None:
        exact = self._rules.get((path, method))
        if exact is None and method == "HEAD":
            exact = self._rules.get((path, "GET"))
        any_method = self._rules.get((path, None))
        # Admin on any method wins over a method-specific public rule.
        if any_method in ADMIN_CLASSES:
            return any_method
        return exact or any_method

    def _operator_scope(self, path: str) -> str | None:
        scope = self._exact_scopes.get(path)
        if scope is None:
            for prefix, prefix_scope in self._prefix_scopes:
                if path.startswith(prefix):
                    return prefix_scope
        return scope

    def decide(self, principal: Principal, need: RouteNeed, level: int | None = None) -> str:
        """ALLOW, or why not. ``level``: what the route asks of a key on this
        request, when it depends on the request (``need.level_for``)."""
        route_class = need.route_class
        if route_class == PUBLIC:
            return ALLOW
        if route_class in ADMIN_CLASSES:
            if principal.is_admin or (route_class == KEYS and principal.is_bootstrap):
                return ALLOW
            return UNAUTHENTICATED if principal.is_anonymous else FORBIDDEN
        if route_class == KEY_HOLDER:
            return ALLOW if principal.key is not None else NEED_KEY
        if principal.has_identity:
            return ALLOW if principal.level >= (need.level if level is None else level) else FORBIDDEN
        # Anonymous (the bootstrap too, outside key management): ComfyUI as it
        # was in enable mode; nothing in require mode.
        return UNAUTHENTICATED if self.mode == "require" else ALLOW
