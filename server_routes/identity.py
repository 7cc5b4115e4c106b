"""Who a request comes from: the presented key, the session cookie, trusted
local requests, and the facts about the connection (client address, HTTPS,
cross-origin) that the rest of the package reads.

It names the caller and nothing more; whether the caller may use the route
is the middleware's decision (``server_routes.middleware``).
"""

import base64
import binascii

from aiohttp import hdrs
from multidict import CIMultiDict, istr

from ..core import keys as key_format
from ..core.addresses import address_allowed
from ..core.hashing import secret_hex
from ..core.proxies import is_loopback
from ..core.principals import ANONYMOUS, LOCAL_ADMIN, LOCAL_BOOTSTRAP, PASSWORD_ADMIN, for_key
from ..service.keycache import VERIFIED_BEARERS_MAX
from .responses import error

SESSION_COOKIE = "comfyui_api_auth"
AUTHORIZATION = hdrs.AUTHORIZATION  # an istr: case-folded once, so lookups skip folding
X_API_KEY = istr("X-API-Key")
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
X_FORWARDED_FOR = istr("X-Forwarded-For")
X_FORWARDED_PROTO = istr("X-Forwarded-Proto")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
UPGRADE = hdrs.UPGRADE
TOKEN_PARAMETER = "token"  # ?token=<key>, with COMFYUI_API_AUTH_QUERY_TOKEN=on


class Denied(Exception):
    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


def unauthorized(code: str, message: str):
    return error(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="ComfyUI"'})


def _key_failure(presented: str):
    if not key_format.is_well_formed(presented):
        return unauthorized("MALFORMED_KEY", "the API key is malformed (expected comfy_ followed by 46 letters and digits)")
    return invalid_key()


def invalid_key():
    return unauthorized("INVALID_KEY", "the API key is not valid")


def key_expired():
    return unauthorized("KEY_EXPIRED", "the API key has expired; ask an admin for a new one or a later expiry")


def ip_not_allowed():
    return error(403, "IP_NOT_ALLOWED", "this API key may not be used from your address (its IP allowlist)")


def key_problem(principal, request, now, trusted_proxies) -> str | None:
    """Why a key's principal may not be used for this request, as an error
    code (see KEY_REFUSALS): its secret's grace period is over, the key is
    disabled or expired, or the caller's address is not on its allowlist.
    None if it may."""
    key = principal.key
    if principal.ends_at <= now and not key.is_expired(now):
        return "INVALID_KEY"  # a rotated key's previous secret, after its grace period
    if not key.is_active:
        return "KEY_DISABLED"
    if principal.ends_at <= now:
        return "KEY_EXPIRED"
    if principal.networks and not address_allowed(principal.networks, client_address(request, trusted_proxies)):
        return "IP_NOT_ALLOWED"
    return None


KEY_REFUSALS = {
    "INVALID_KEY": invalid_key,
    "KEY_DISABLED": lambda: unauthorized("KEY_DISABLED", "the API key is disabled"),
    "KEY_EXPIRED": key_expired,
    "IP_NOT_ALLOWED": ip_not_allowed,
}


# ---- the connection ----------------------------------------------------------------

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


def client_address(request, trusted_proxies) -> str:
    """The client's address, for the login throttle and the audit trail: the
    peer, or what a trusted proxy says in X-Forwarded-For (see core.proxies).
    The one place that decides it (an IP allowlist can reuse it)."""
    peer = request.remote or "unknown"
    if not trusted_proxies:
        return peer
    return trusted_proxies.client_address(peer, request.headers.getall(X_FORWARDED_FOR, []))


def is_https(request, trusted_proxies) -> bool:
    """The client spoke HTTPS: to us, or to a trusted proxy that says so."""
    if request.secure:
        return True
    return trusted_proxies.forwarded_https(request.remote, request.headers.getall(X_FORWARDED_PROTO, []))


def is_trusted_local(request, trusted_proxies=None) -> bool:
    headers = request.headers
    if not is_loopback(request.remote):
        return False
    # A configured proxy forwards other people's requests, whatever it sends.
    if trusted_proxies and trusted_proxies.trusts(request.remote):
        return False
    for name in FORWARDING_HEADERS:
        if name in headers:
            return False
    # A loopback Host header defeats DNS rebinding; a foreign Origin, CSRF.
    if _host_name(headers.get("Host", "")).lower() not in LOOPBACK_HOSTS:
        return False
    return not is_cross_origin(headers)


# ---- credentials ----------------------------------------------------------------

def basic_key(credentials: str):
    """The key in ``Basic base64(<anything>:comfy_...)`` (clients that only
    speak Basic put it in the password), or None: a Basic header whose
    password is not one of our keys belongs to someone else, such as an
    nginx ``auth_basic`` in front that passes its own header upstream."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not base64, or not UTF-8
        return None
    _, colon, password = decoded.partition(":")
    return password if colon and password.startswith(key_format.PREFIX) else None


def presented_key(headers, authorization, api_key):
    """The key from Authorization (Bearer, or Basic with a key as the
    password) or X-API-Key; None if there is none."""
    presented = None
    if authorization is not None:
        if len(headers.getall(AUTHORIZATION)) > 1:
            raise Denied(unauthorized("CONFLICTING_CREDENTIALS", "send one Authorization header"))
        parts = authorization.split(None, 1)
        scheme = parts[0].lower() if parts else ""
        if scheme == "bearer":
            # "Bearer" with nothing after it is no credential: Open WebUI sends
            # it whenever its key field is empty, its default.
            presented = (parts[1].strip() if len(parts) > 1 else "") or None
        elif scheme == "basic" and len(parts) > 1:
            presented = basic_key(parts[1])
    if api_key is not None:
        values = headers.getall(X_API_KEY)
        if len(values) > 1 and len(set(values)) > 1:
            raise Denied(unauthorized("CONFLICTING_CREDENTIALS", "send one X-API-Key header"))
        api_key = api_key.strip()
        if not api_key:
            raise Denied(unauthorized("MALFORMED_CREDENTIALS", "X-API-Key is empty"))
        if presented is not None and presented != api_key:
            raise Denied(unauthorized("CONFLICTING_CREDENTIALS", "Authorization and X-API-Key carry different keys"))
        presented = api_key
    return presented


def without_query_token(request):
    """The request as ComfyUI's handler should see it when its URL carries a
    key as ``?token=comfy_...`` (COMFYUI_API_AUTH_QUERY_TOKEN=on): the token
    taken out of the URL, so no handler, log line or stored prompt sees it,
    and handed on as an ``X-API-Key`` header, so it gets that header's checks
    (a second, different key is CONFLICTING_CREDENTIALS; a bad one is 401).
    A ``token`` that is not one of our keys (another node's) stays."""
    tokens = request.query.getall(TOKEN_PARAMETER, ())
    ours = [token for token in tokens if token.startswith(key_format.PREFIX)]
    if not ours:
        return request
    headers = CIMultiDict(request.headers)
    for token in ours:
        headers.add(X_API_KEY, token)
    return request.clone(rel_url=request.rel_url.without_query_params(TOKEN_PARAMETER), headers=headers)


def session_principal(request, now, sessions, keys, trusted_proxies=None):
    """The principal of the request's session cookie, or None (no cookie, or a
    stale one: the browser is simply signed out; so is a session whose key
    expired or whose secret was rotated away). ``sessions`` maps a token's
    hash to (kind, key pk, expires at, key generation); ``keys`` is the KeyCache."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    digest = secret_hex(token)  # as the session index holds it
    session = sessions.get(digest) if digest else None
    if session is None or session[2] <= now:
        return None
    kind, key_pk, _, generation = session
    if kind == "admin":
        principal = PASSWORD_ADMIN
    else:
        principal = session_key_principal(keys, key_pk, generation, now)
        if principal is None:
            return None
        if principal.networks and not address_allowed(principal.networks, client_address(request, trusted_proxies)):
            raise Denied(ip_not_allowed())
    # A WebSocket handshake is a GET, but what it opens acts for the page
    # (SameSite=Lax sends the cookie from a sibling subdomain or port), so
    # it must come from the same origin too.
    headers = request.headers
    if (request.method not in SAFE_METHODS or UPGRADE in headers) and is_cross_origin(headers):
        raise Denied(error(403, "CROSS_ORIGIN", "a signed-in browser request must come from the same origin"))
    return principal


def session_key_principal(keys, key_pk, generation, now):
    """The principal of a key session (opened with the key's secret of
    ``generation``), or None once the key is gone, disabled or expired, or
    that secret was rotated away (at once, or at the end of its grace period)."""
    current = keys.key_principal(key_pk)
    if current is None:
        return None
    record = current.key
    if not record.is_active or record.is_expired(now):
        return None
    if generation == record.generation:
        return for_key(record, "session")
    if generation == record.generation - 1 and (record.previous_valid_until or 0.0) > now:
        return for_key(record, "session", previous=True)
    return None


def identifier(keys, runtime):
    """``identify(request, headers, now)``: the principal of a request, or
    Denied for credentials that are wrong (rather than missing). ``keys`` is
    the KeyCache; ``runtime`` says what a trusted local request gets."""
    key_principals, sessions = keys.principals, keys.sessions
    verified = keys.verified_bearers

    def identify(request, headers, now):
        authorization = headers.get(AUTHORIZATION)
        api_key = headers.get(X_API_KEY)
        if authorization is not None or api_key is not None:
            presented = presented_key(headers, authorization, api_key)
            if presented is not None:
                digest = key_format.digest_key(presented)
                principal = key_principals.get(digest) or keys.principal_of(digest)
                if principal is None:
                    raise Denied(_key_failure(presented))
                problem = key_problem(principal, request, now, runtime.trusted_proxies)
                if problem is not None:
                    raise Denied(KEY_REFUSALS[problem]())
                if api_key is None and authorization[:6].lower() == "basic " and not principal.restricted:
                    # A client that speaks only Basic sends the same header every
                    # time: remember it as the Bearer fast path remembers its
                    # headers (same checks there; cleared when any key changes).
                    # A restricted key (expiry, grace, allowlist) is checked every time.
                    if len(verified) >= VERIFIED_BEARERS_MAX:
                        verified.clear()
                    verified[authorization] = principal
                return principal
        if "Cookie" in headers:
            principal = session_principal(request, now, sessions, keys, runtime.trusted_proxies)
            if principal is not None:
                return principal
        if runtime.trusted_local_possible and is_trusted_local(request, runtime.trusted_proxies):
            if runtime.local_trust == "on":
                return LOCAL_ADMIN
            # bootstrap: only while nobody can sign in as admin (a forwarder
            # makes anyone look local, so this must not outlive the first run)
            return ANONYMOUS if keys.admin_exists else LOCAL_BOOTSTRAP
        return ANONYMOUS

    return identify
