"""The one middleware that decides, for every request, who calls and whether
they may. It runs outermost, after aiohttp has matched the route, and
decides on the matched route template (see ``auth.policy``).

Hot path budget: a few microseconds. For a key: one dict lookup of the
header (a SHA-256 the first time a value is seen), a counter, three header
values. No regular expressions, no logging per request, no database.
``bench/instructions.py`` counts what a change costs.
"""

import contextvars
import time
from urllib.parse import quote

from aiohttp import hdrs, web
from multidict import istr

from ..auth import keys as key_format
from ..auth import policy as access
from ..auth.ratelimit import REFUSED, WINDOW_SECONDS, HourClock
from ..auth.principals import ANONYMOUS, LOCAL_ADMIN, PASSWORD_ADMIN, for_key
from ..runtime import VERIFIED_BEARERS_MAX, StorageUnavailable
from .prompt_gate import PROMPT_TEMPLATES, PromptGate
from .responses import error

SESSION_COOKIE = "comfyui_api_auth"
AUTHORIZATION = hdrs.AUTHORIZATION  # an istr: case-folded once, so lookups skip folding
X_API_KEY = istr("X-API-Key")
# Case-folded once, as aiohttp's own header names are, so setting them is cheap.
LIMIT_HEADER = istr("X-RateLimit-Limit")
REMAINING_HEADER = istr("X-RateLimit-Remaining")
RESET_HEADER = istr("X-RateLimit-Reset")
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

# The principal of the request being handled; read by the package's own routes.
current_principal: contextvars.ContextVar = contextvars.ContextVar("comfyui_api_auth_principal", default=ANONYMOUS)


def _is_loopback_address(address) -> bool:
    if not address:
        return False
    return address == "::1" or address.startswith("127.") or address.startswith("::ffff:127.")


def _host_name(host_header: str) -> str:
    """``Host`` without its port: ``[::1]:8188`` -> ``[::1]``, ``a:80`` -> ``a``."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _origin_host(origin: str) -> str:
    return origin.split("://", 1)[-1].rstrip("/")


def is_cross_origin(headers) -> bool:
    """True when a browser says the request comes from another site."""
    origin = headers.get("Origin")
    if origin is not None:
        return origin == "null" or _origin_host(origin).lower() != headers.get("Host", "").lower()
    fetch_site = headers.get("Sec-Fetch-Site")
    return fetch_site is not None and fetch_site not in ("same-origin", "none")


def is_trusted_local(request) -> bool:
    headers = request.headers
    if not _is_loopback_address(request.remote):
        return False
    for name in FORWARDING_HEADERS:
        if name in headers:
            return False
    # A loopback Host header defeats DNS rebinding; a foreign Origin, CSRF.
    if _host_name(headers.get("Host", "")).lower() not in LOOPBACK_HOSTS:
        return False
    return not is_cross_origin(headers)


_sha256 = key_format.fast_sha256


def _digest(text: str):
    """Hex SHA-256 of a session token (as the session index holds it); None if unencodable."""
    try:
        return _sha256(text.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        return None


def too_many(key, reset_at, now):
    """429 for a key whose hourly limit is spent (also used by a key sign-in)."""
    reset_in = max(1, reset_at - int(now))
    headers = {"X-RateLimit-Limit": str(key.rate_limit), "X-RateLimit-Remaining": "0",
               "X-RateLimit-Reset": str(reset_at), "Retry-After": str(reset_in)}
    return error(429, "RATE_LIMIT_EXCEEDED", f"rate limit of {key.rate_limit} requests per hour exceeded",
                 headers=headers, limit=key.rate_limit, reset_in=reset_in)


class Denied(Exception):
    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


def _unauthorized(code: str, message: str):
    return error(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="ComfyUI"'})


def _key_failure(presented: str):
    if not key_format.is_well_formed(presented):
        return _unauthorized("MALFORMED_KEY", "the API key is malformed (expected comfy_ followed by 46 letters and digits)")
    return _unauthorized("INVALID_KEY", "the API key is not valid")


class RouteFacts:
    """What the middleware needs to know about a matched route, worked out once.
    (A slotted class: its attributes read faster than a named tuple's.)"""

    __slots__ = ("route_class", "usage_key", "usage_cells", "wants_context", "queues_prompt", "admin_only",
                 "key_fast_path")

    def __init__(self, route_class: str, usage_key: tuple, wants_context: bool, queues_prompt: bool, method: str):
        self.route_class = route_class
        self.usage_key = usage_key          # (route template without the /api twin prefix, method)
        self.usage_cells = None             # where its requests are counted, set when the facts are cached
        self.wants_context = wants_context  # one of this package's routes, which read current_principal
        self.queues_prompt = queues_prompt
        self.admin_only = route_class == access.ADMIN  # a key needs the admin scope
        self.key_fast_path = method != "OPTIONS"       # a Bearer key may be checked inline (not a preflight)


def create_middleware(runtime, gate: PromptGate):
    """Build the middleware bound to one runtime."""
    facts_by_route: dict = {}
    hour_clock = HourClock()  # the current hour and its X-RateLimit-Reset text

    facts_by_route_and_method: dict = {}  # for routes that take any method ("*")

    def route_facts(route, method):
        """Work out a route's facts on a cache miss. Routes are fixed once the
        app runs, so facts are cached per route object; a route for one method
        needs no method in the key (HEAD has its own route). Unmatched requests
        get a new route object each time: worked out each time, never cached."""
        any_method = route.method == hdrs.METH_ANY
        if any_method:
            facts = facts_by_route_and_method.get((route, method))
            if facts is not None:
                return facts
        resource = route.resource
        template = resource.canonical if resource is not None else None
        path = access.canonical_path(template)
        route_class = runtime.policy.classify(template, method)
        facts = RouteFacts(
            route_class=route_class,
            usage_key=("(static)" if path == "" else (path or "(unmatched)"), method),
            wants_context=any(path == rule_path for rule_path, _ in access.BUILTIN_RULES),
            queues_prompt=template in PROMPT_TEMPLATES and method == "POST",
            method=method)
        if resource is not None and len(facts_by_route) + len(facts_by_route_and_method) < 4096:
            # Cells only for cached facts: unmatched requests, anyone's, must not
            # make one per invented path or method.
            facts.usage_cells = runtime.usage.cells_for(facts.usage_key)
            if any_method:
                facts_by_route_and_method[(route, method)] = facts
            else:
                facts_by_route[route] = facts
        return facts

    def presented_key(headers, authorization, api_key):
        """The key from Authorization: Bearer or X-API-Key; None if there is none."""
        presented = None
        if authorization is not None:
            if len(headers.getall(AUTHORIZATION)) > 1:
                raise Denied(_unauthorized("CONFLICTING_CREDENTIALS", "send one Authorization header"))
            parts = authorization.split(None, 1)
            if parts and parts[0].lower() == "bearer":
                presented = parts[1].strip() if len(parts) > 1 else ""
                if not presented:
                    raise Denied(_unauthorized("MALFORMED_CREDENTIALS", "Authorization: Bearer needs a key after it"))
        if api_key is not None:
            values = headers.getall(X_API_KEY)
            if len(values) > 1 and len(set(values)) > 1:
                raise Denied(_unauthorized("CONFLICTING_CREDENTIALS", "send one X-API-Key header"))
            api_key = api_key.strip()
            if not api_key:
                raise Denied(_unauthorized("MALFORMED_CREDENTIALS", "X-API-Key is empty"))
            if presented is not None and presented != api_key:
                raise Denied(_unauthorized("CONFLICTING_CREDENTIALS", "Authorization and X-API-Key carry different keys"))
            presented = api_key
        return presented

    def session_principal(request, now):
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        digest = _digest(token)
        session = runtime.sessions.get(digest) if digest else None
        if session is None or session[2] <= now:
            return None  # stale cookie: the browser is simply signed out
        kind, key_pk, _ = session
        if kind == "admin":
            principal = PASSWORD_ADMIN
        else:
            record = runtime.keys_by_pk.get(key_pk)
            if record is None or not record.is_active:
                return None
            principal = for_key(record, "session")
        if request.method not in SAFE_METHODS and is_cross_origin(request.headers):
            raise Denied(error(403, "CROSS_ORIGIN", "a signed-in browser request must come from the same origin"))
        return principal

    def identify(request, headers, now):
        authorization = headers.get(AUTHORIZATION)
        api_key = headers.get(X_API_KEY)
        if authorization is not None or api_key is not None:
            presented = presented_key(headers, authorization, api_key)
            if presented is not None:
                principal = runtime.key_principals.get(key_format.digest_key(presented))
                if principal is None:
                    raise Denied(_key_failure(presented))
                if not principal.key.is_active:
                    raise Denied(_unauthorized("KEY_DISABLED", "the API key is disabled"))
                return principal
        if "Cookie" in headers:
            principal = session_principal(request, now)
            if principal is not None:
                return principal
        if runtime.trusted_local_possible and is_trusted_local(request):
            return LOCAL_ADMIN
        return ANONYMOUS

    def refuse(request, decision):
        if decision == access.FORBIDDEN:
            return error(403, "ADMIN_REQUIRED", "this route needs an admin; your key does not have the admin scope")
        if decision == access.NEED_KEY:
            return _unauthorized("KEY_REQUIRED", "this route reports the calling key's usage: send the key as "
                                 "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        if (request.method in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")
                and request.headers.get("Upgrade", "").lower() != "websocket"):
            location = "/login?next=" + quote(request.path_qs, safe="/")
            return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})
        return _unauthorized("AUTH_REQUIRED", "sign in at /login, or send an API key as 'Authorization: Bearer <key>'"
                             + (" (or call from this machine)" if runtime.trusted_local_possible else ""))

    def bearer_principal(headers, authorization, facts):
        """The principal of a lone, valid, active ``Authorization: Bearer <key>``
        allowed on this route; else None. A header value seen before costs one
        dict lookup (``runtime.verified_bearers``), a new one a SHA-256."""
        verified = runtime.verified_bearers
        principal = verified.get(authorization)
        if principal is None:
            if not authorization.startswith("Bearer "):
                return None
            try:
                principal = runtime.key_principals.get(_sha256(authorization[7:].encode()).digest())
            except UnicodeEncodeError:
                return None
            if principal is None or not principal.key.is_active:
                return None
            if len(verified) >= VERIFIED_BEARERS_MAX:
                verified.clear()
            verified[authorization] = principal
        if (not principal.key.is_active or (facts.admin_only and not principal.is_admin)
                or X_API_KEY in headers or len(headers.getall(AUTHORIZATION)) != 1):
            return None
        return principal

    @web.middleware
    async def api_auth_middleware(request, handler):
        if runtime.refusing is not None:
            return error(503, "AUTH_UNAVAILABLE", "API key authentication is not available: " + runtime.refusing)
        headers = request.headers
        route = request.match_info.route
        facts = facts_by_route.get(route) or route_facts(route, request.method)
        now = time.time()
        # The common case, a script sending its key as "Authorization: Bearer",
        # is checked inline (see bearer_principal). Anything else (sessions,
        # X-API-Key, a bad or disabled key, a key without the admin scope on an
        # admin route, a preflight) goes through identify() and the policy,
        # which give the exact answer.
        authorization = headers.get(AUTHORIZATION)
        principal = (bearer_principal(headers, authorization, facts)
                     if authorization is not None and facts.key_fast_path else None)
        if principal is not None:
            key = principal.key
        else:
            # A CORS preflight carries no credentials by design; ComfyUI's
            # CORS/origin middleware answers it.
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in headers:
                return await handler(request)
            try:
                principal = identify(request, headers, now)
                decision = runtime.policy.decide(principal, facts.route_class)
                if decision != access.ALLOW:
                    raise Denied(refuse(request, decision))
            except Denied as denied:
                return denied.response
            key = principal.key
            if key is None and not facts.wants_context and not facts.queues_prompt:
                return await handler(request)  # anonymous or admin on a ComfyUI route: nothing to count
        # Only the package's own routes read the principal from the context.
        token = current_principal.set(principal) if facts.wants_context else None
        try:
            if key is None:
                if facts.queues_prompt:
                    return await gate.run(request, handler, principal, now)
                return await handler(request)
            # A request authenticated by a key: count it, limit it, say so in headers.
            if not hour_clock.start <= now < hour_clock.end:
                hour_clock.roll(now)
            window, reset_text = hour_clock.window, hour_clock.reset_text
            quota = runtime.quota
            if quota is None:
                remaining = runtime.limiter.take(key.pk, key.rate_limit, window)
            else:
                remaining = quota.take(key.pk, key.rate_limit, window)
                if remaining is None:
                    remaining = await runtime.take_shared(key, window, now)
                if quota.running_low:
                    runtime.prefetch_running_low(now)
            cells = facts.usage_cells
            if cells is None:  # an unmatched request: its facts, and so its cells, are not kept
                cells = runtime.usage.cells_for(facts.usage_key)
            if remaining == REFUSED:
                runtime.usage.record(cells, key.pk, False, 0.0, now, window)
                return too_many(key, window + WINDOW_SECONDS, now)
            status = 500
            try:
                if facts.queues_prompt:
                    response = await gate.run(request, handler, principal, now)
                else:
                    response = await handler(request)
                status = response.status
                # On a response already sent (a WebSocket) these change nothing,
                # harmlessly; checking ``prepared`` would cost every request.
                out = response.headers
                if status == 429:  # a prompt-limit 429 already describes the limit that refused it
                    out.setdefault(LIMIT_HEADER, str(key.rate_limit))
                else:
                    out[LIMIT_HEADER] = str(key.rate_limit)
                    out[REMAINING_HEADER] = str(remaining)
                    out[RESET_HEADER] = reset_text
                return response
            except web.HTTPException as exc:
                status = exc.status
                exc.headers[LIMIT_HEADER] = str(key.rate_limit)
                exc.headers[REMAINING_HEADER] = str(remaining)
                exc.headers[RESET_HEADER] = reset_text
                raise
            finally:
                runtime.usage.record(cells, key.pk, status < 400, time.time() - now, now, window)
        except StorageUnavailable as failure:
            return error(503, "AUTH_UNAVAILABLE", f"the key database is unavailable ({failure}); nothing was changed")
        finally:
            if token is not None:
                current_principal.reset(token)

    return api_auth_middleware
