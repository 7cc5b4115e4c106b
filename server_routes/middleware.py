"""The one middleware that decides, for every request, who calls and whether
they may. It runs outermost, after aiohttp has matched the route, and
decides on the matched route template (see ``auth.policy``).

Hot path budget: a few microseconds. One SHA-256 and one dict lookup for a
key, a counter, three header values. No regular expressions, no logging per
request, no database.
"""

import contextvars
import hashlib
import time
from urllib.parse import quote

from aiohttp import web

from ..auth import keys as key_format
from ..auth import policy as access
from ..auth.principals import ANONYMOUS, LOCAL_ADMIN, PASSWORD_ADMIN, for_key
from ..runtime import StorageUnavailable
from .prompt_gate import PROMPT_TEMPLATES, PromptGate
from .responses import error

SESSION_COOKIE = "comfyui_api_auth"
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

# The principal of the request being handled; read by on-prompt handlers.
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


def _digest(text: str):
    try:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        return None


class Denied(Exception):
    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


def _unauthorized(code: str, message: str):
    return error(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="ComfyUI"'})


def _key_failure(presented: str, digest):
    if digest is None or not key_format.is_well_formed(presented):
        return _unauthorized("MALFORMED_KEY", "the API key is malformed (expected comfy_ followed by 46 letters and digits)")
    return _unauthorized("INVALID_KEY", "the API key is not valid")


def create_middleware(runtime, gate: PromptGate):
    """Build the middleware bound to one runtime."""
    route_names: dict = {}

    def presented_key(headers):
        """The key from Authorization: Bearer or X-API-Key, '' if malformed, None if absent."""
        presented = None
        authorization = headers.get("Authorization")
        if authorization is not None:
            if len(headers.getall("Authorization")) > 1:
                raise Denied(_unauthorized("CONFLICTING_CREDENTIALS", "send one Authorization header"))
            parts = authorization.split(None, 1)
            if parts and parts[0].lower() == "bearer":
                presented = parts[1].strip() if len(parts) > 1 else ""
                if not presented:
                    raise Denied(_unauthorized("MALFORMED_CREDENTIALS", "Authorization: Bearer needs a key after it"))
        api_key = headers.get("X-API-Key")
        if api_key is not None and len(set(headers.getall("X-API-Key"))) > 1:
            raise Denied(_unauthorized("CONFLICTING_CREDENTIALS", "send one X-API-Key header"))
        if api_key is not None:
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

    def identify(request, now):
        headers = request.headers
        presented = presented_key(headers)
        if presented is not None:
            digest = _digest(presented)
            record = runtime.keys_by_hash.get(digest) if digest else None
            if record is None:
                raise Denied(_key_failure(presented, digest))
            if not record.is_active:
                raise Denied(_unauthorized("KEY_DISABLED", "the API key is disabled"))
            return for_key(record, "header")
        if "Cookie" in headers:
            principal = session_principal(request, now)
            if principal is not None:
                return principal
        if runtime.trusted_local_possible and is_trusted_local(request):
            return LOCAL_ADMIN
        return ANONYMOUS

    def refuse(request, decision, principal):
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

    def route_name(template):
        name = route_names.get(template)
        if name is None:
            name = access.canonical_path(template)
            name = "(static)" if name == "" else (name or "(unmatched)")
            if len(route_names) < 4096:
                route_names[template] = name
        return name

    @web.middleware
    async def api_auth_middleware(request, handler):
        if runtime.problem is not None or runtime.degraded is not None or not runtime.ready:
            return error(503, "AUTH_UNAVAILABLE", "API key authentication is not available: "
                         + (runtime.problem or runtime.degraded or "starting"))
        headers = request.headers
        # A CORS preflight carries no credentials by design; ComfyUI's
        # CORS/origin middleware answers it.
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in headers:
            return await handler(request)
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else None
        now = time.time()
        try:
            principal = identify(request, now)
            decision = runtime.policy.decide(principal, runtime.policy.classify(template, request.method))
            if decision != access.ALLOW:
                raise Denied(refuse(request, decision, principal))
        except Denied as denied:
            return denied.response
        token = current_principal.set(principal)
        try:
            queues_prompt = template in PROMPT_TEMPLATES and request.method == "POST"
            if principal.key is not None:
                return await _limited(request, handler, principal, template, now, queues_prompt)
            if queues_prompt:
                return await gate.run(request, handler, principal, now)
            return await handler(request)
        except StorageUnavailable as failure:
            return error(503, "AUTH_UNAVAILABLE", f"the key database is unavailable ({failure}); nothing was changed")
        finally:
            current_principal.reset(token)

    async def _take_shared(key, now):
        """Spend from this process's batch; claim another from the database when it runs out."""
        # Each claim grants at least one request or learns the hour is spent,
        # so this ends; the bound is a guard against a database gone strange.
        for _ in range(100):
            result = runtime.quota.take(key.pk, key.rate_limit, now)
            if result is not None:
                return result
            await runtime.claim_quota(key, now)
        return False, 0, int(now) // 3600 * 3600 + 3600

    async def _limited(request, handler, principal, template, now, queues_prompt):
        key = principal.key
        if runtime.quota is None:
            allowed, remaining, reset_at = runtime.limiter.hit(key.pk, key.rate_limit, now)
        else:
            taken = runtime.quota.take(key.pk, key.rate_limit, now)  # from this process's batch
            allowed, remaining, reset_at = taken if taken is not None else await _take_shared(key, now)
        rate_headers = {
            "X-RateLimit-Limit": str(key.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset_at),
        }
        name = route_name(template)
        if not allowed:
            runtime.usage.record(key.pk, name, request.method, False, 0.0, now)
            reset_in = max(1, reset_at - int(now))
            rate_headers["Retry-After"] = str(reset_in)
            return error(429, "RATE_LIMIT_EXCEEDED", f"rate limit of {key.rate_limit} requests per hour exceeded",
                         headers=rate_headers, limit=key.rate_limit, reset_in=reset_in)
        status = 500
        try:
            if queues_prompt:
                response = await gate.run(request, handler, principal, now)
            else:
                response = await handler(request)
            status = response.status
            if not response.prepared:
                headers = response.headers
                for header, value in rate_headers.items():
                    # a prompt-limit 429 already describes the limit that refused it
                    headers.setdefault(header, value)
            return response
        except web.HTTPException as exc:
            status = exc.status
            exc.headers.extend(rate_headers)
            raise
        finally:
            runtime.usage.record(key.pk, name, request.method, status < 400, time.time() - now, now)

    return api_auth_middleware
