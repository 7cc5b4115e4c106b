"""The one middleware that decides, for every request, who calls and whether
they may. It runs outermost, after aiohttp has matched the route, and
decides on the matched route template (see ``core.policy``).

Hot path budget: a few microseconds. For a key: one dict lookup of the
header (a SHA-256 the first time a value is seen), a counter, three header
values. No regular expressions, no logging per request, no database.
``bench/instructions.py`` counts what a change costs.
"""

import asyncio
import contextvars
import functools
import os
import time
from urllib.parse import quote

from aiohttp import hdrs, web
from multidict import istr

from ..core import keys as key_format
from ..core import policy as access
from ..core.principals import ANONYMOUS
from ..core.ratelimit import REFUSED, WINDOW_SECONDS, HourClock
from ..core.scopes import scope_for_level
from ..core.usage import PAGE_FILES, PAGE_LOADS, REFUSED_ROUTE_PREFIX, ROUTE_MAX
from ..service.dbthread import StorageUnavailable
from ..service.keycache import VERIFIED_BEARERS_MAX
from .identity import AUTHORIZATION, X_API_KEY, Denied, identifier, unauthorized, without_query_token
from .route_hooks import wrapper_for
from .responses import LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER, error, rate_limit_headers

# Case-folded once, as aiohttp's own header names are, so setting them is cheap.
X_FRAME_OPTIONS = istr("X-Frame-Options")
CONTENT_SECURITY_POLICY = istr("Content-Security-Policy")
# Pages: ComfyUI's root (index.html), static files (index.html and any other
# HTML a frontend ships) and the login page. Only these are framing targets.
PAGE_PATHS = frozenset({"/", "/login"})
# Pages that are not static files: ComfyUI's index (get_root, also as /api/)
# and the sign-in page. Newer ComfyUI serves workflow templates from a handler.
PAGE_TEMPLATES = {"/": PAGE_LOADS, "/login": PAGE_LOADS, "/templates/{path}": PAGE_FILES}
PAGE_METHODS = frozenset({"GET", "HEAD"})
KNOWN_FILES_MAX = 4096
ROUTE_FACTS_MAX = 4096  # routes are fixed; past this, facts are worked out per request (a guard, never reached)
# 503 bodies go to anyone, so they never say why: the reason (a setting, a
# database URL, a driver's error text) is in the server log only.
UNAVAILABLE_MESSAGE = "API key authentication is not available; the server log says why"
DATABASE_UNAVAILABLE_MESSAGE = "the key database is unavailable; nothing was changed (the server log says why)"

_sha256 = key_format.fast_sha256

# The principal of the request being handled; read by the package's own routes.
current_principal: contextvars.ContextVar = contextvars.ContextVar("comfyui_api_auth_principal", default=ANONYMOUS)


LOCAL_BOOTSTRAP_LIMIT = (
    "a local request without sign-in may only manage non-admin keys, until an admin exists "
    "(COMFYUI_API_AUTH_TRUST_LOCALHOST=bootstrap); to become admin, enter the setup code printed in the "
    "ComfyUI console at /login, or run the package's 'set-password' or 'create-key --admin' on the server")


def scope_required(principal, level):
    """403 for a principal whose scopes do not reach a route: one code for
    every refusal for lack of rights, naming the scope that would."""
    needed = scope_for_level(level)
    if principal.is_bootstrap:
        return error(403, "SCOPE_REQUIRED", LOCAL_BOOTSTRAP_LIMIT, required_scope=needed)
    key = principal.key
    held = ", ".join(key.scopes) if key is not None else "none"
    return error(403, "SCOPE_REQUIRED", f"this needs the '{needed}' scope; this key has: {held}",
                 required_scope=needed, scopes=list(key.scopes) if key is not None else [])


def too_many(key, reset_at, now):
    """429 for a key whose hourly limit is spent (also used by a key sign-in)."""
    reset_in = max(1, reset_at - int(now))
    headers = rate_limit_headers(key.rate_limit, 0, reset_at, reset_in)
    return error(429, "RATE_LIMIT_EXCEEDED", f"rate limit of {key.rate_limit} requests per hour exceeded",
                 headers=headers, limit=key.rate_limit, reset_in=reset_in)


async def _guard_frames(handler, request):
    """Serve a page that no other site may frame (clickjacking: the framed page
    would act with the visitor's session or local trust)."""
    response = await handler(request)
    headers = response.headers
    headers.setdefault(X_FRAME_OPTIONS, "DENY")
    headers.add(CONTENT_SECURITY_POLICY, "frame-ancestors 'none'")  # adds to any policy the page has
    return response


class RouteFacts:
    """What the middleware needs to know about a matched route, worked out once.
    (A slotted class: its attributes read faster than a named tuple's.)"""

    __slots__ = ("level", "need", "usage_key", "usage_cells", "refused_key", "wants_context",
                 "around", "key_fast_path", "page_cells", "page_directory", "page")

    def __init__(self, need, usage_key: tuple, wants_context: bool, around, method: str,
                 page_cells=None, page_directory=None, page: bool = False):
        self.need = need                    # the policy's RouteNeed (its class decides off the fast path)
        # The least principal.level a key needs here (core.scopes); for a
        # query-dependent route a level no key has, so the fast path defers.
        self.level = need.level
        self.usage_key = usage_key          # (route template without the /api twin prefix, method)
        self.usage_cells = None             # where its requests are counted, set when the facts are cached
        self.refused_key = ((REFUSED_ROUTE_PREFIX + usage_key[0])[:ROUTE_MAX], usage_key[1])  # where refusals for scope go
        self.wants_context = wants_context  # one of this package's routes, which read current_principal
        # What runs the handler on this route, called as around(request, handler,
        # principal, now): the route hooks' wrappers (see route_hooks), such as
        # the prompt gate on POST /prompt; None (the handler alone) elsewhere.
        self.around = around
        # A page file (see page_kind): where a key's page loads are counted
        # apart from its requests; None for every other route.
        self.page_cells = page_cells
        self.page_directory = page_directory  # a static route's folder, to tell a miss before it is sent
        self.page = page  # an HTML page (or a static file) that gets the anti-framing headers
        # A Bearer key may be checked inline: not on a preflight, not on a page
        # or page file (those take the general path, which serves them
        # uncharged and with the framing headers).
        self.key_fast_path = method != "OPTIONS" and page_cells is None and not page


def page_kind(resource, path, method):
    """PAGE_LOADS or PAGE_FILES for a route that serves the page itself or its
    files (a static folder: ComfyUI's web root, EXTENSION_WEB_DIRS, /templates,
    /docs), None for an API route. Worked out once per route."""
    if method not in PAGE_METHODS:
        return None
    if isinstance(resource, web.StaticResource):
        return PAGE_FILES
    return PAGE_TEMPLATES.get(path)


def create_middleware(runtime, hooks=()):
    """Build the middleware bound to one runtime; ``hooks`` are the route hooks
    (see ``route_hooks``: the prompt gate, the open sockets...). Per request it reads
    the runtime's ``refusing`` and three parts, held here directly: the key
    cache, the quota claims and the usage counts."""
    keys, claims, usage = runtime.keys, runtime.claims, runtime.usage
    principals, verified = keys.principals, keys.verified_bearers  # updated in place, never replaced
    principal_of = keys.principal_of  # a key not used since it changed: its principal is built now
    limiter = claims.limiter
    query_tokens = runtime.settings.query_token  # ?token=<key> accepted (off by default)
    facts_by_route: dict = {}
    hour_clock = HourClock()  # the current hour and its X-RateLimit-Reset text

    facts_by_route_and_method: dict = {}  # for routes that take any method ("*")
    known_files: set = set()  # request paths of page files seen to exist (see is_missing)
    identify = identifier(keys, runtime)

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
        static = isinstance(resource, web.StaticResource)
        need = runtime.policy.classify(template, method, static)
        page = page_kind(resource, path, method)
        around = wrapper_for(hooks, path, method) if path is not None else None
        facts = RouteFacts(
            need=need,
            usage_key=("(static)" if path == "" else (path or "(unmatched)"), method),
            # The sign-in page's handler does not read the principal.
            wants_context=page is None and any(path == rule_path for rule_path, _ in access.BUILTIN_RULES),
            around=around,
            method=method,
            page_cells=usage.cells_for((page, method)) if page is not None else None,
            page_directory=str(resource.get_info()["directory"]) if static else None,
            page=not runtime.settings.allow_framing and (path in PAGE_PATHS or static))
        if resource is not None and len(facts_by_route) + len(facts_by_route_and_method) < ROUTE_FACTS_MAX:
            # Cells only for cached facts: unmatched requests, anyone's, must not
            # make one per invented path or method.
            facts.usage_cells = usage.cells_for(facts.usage_key)
            if any_method:
                facts_by_route_and_method[(route, method)] = facts
            else:
                facts_by_route[route] = facts
        return facts

    def refuse(request, principal, decision, level):
        if decision == access.FORBIDDEN:
            return scope_required(principal, level)
        if decision == access.NEED_KEY:
            return unauthorized("KEY_REQUIRED", "this route reports the calling key's usage: send the key as "
                                 "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        if (request.method in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")
                and request.headers.get("Upgrade", "").lower() != "websocket"):
            location = "/login?next=" + quote(request.path_qs, safe="/")
            return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})
        return unauthorized("AUTH_REQUIRED", "sign in at /login, or send an API key as 'Authorization: Bearer <key>'"
                             + (" (or call from this machine)" if runtime.local_trust == "on" else ""))

    def note_refused(key, facts, now):
        """A key refused for lack of scope: in its usage as refused, not charged to its limit."""
        if not hour_clock.start <= now < hour_clock.end:
            hour_clock.roll(now)
        usage.record(usage.cells_for(facts.refused_key), key.pk, False, 0.0, now, hour_clock.window)

    def bearer_principal(headers, authorization, facts):
        """The principal of a lone, valid, active ``Authorization: Bearer <key>``
        allowed on this route, of a key without an expiry, a rotation's old
        secret or an allowlist; else None. A header value seen before costs one
        dict lookup (``keys.verified_bearers``), a new one a SHA-256."""
        principal = verified.get(authorization)
        if principal is None:
            if not authorization.startswith("Bearer "):
                return None
            try:
                digest = _sha256(authorization[7:].encode()).digest()
                principal = principals.get(digest) or principal_of(digest)
            except UnicodeEncodeError:
                return None
            if principal is None or not principal.key.is_active:
                return None
            if principal.restricted:
                # An expiry, a rotation's grace period or an allowlist: the general
                # path (identify) checks it on every request and answers a refusal;
                # never remembered in ``verified``, whose hits are not checked.
                return None
            if len(verified) >= VERIFIED_BEARERS_MAX:
                verified.clear()
            verified[authorization] = principal
        if (not principal.key.is_active or principal.level < facts.level
                or X_API_KEY in headers or len(headers.getall(AUTHORIZATION)) != 1):
            return None
        return principal

    async def charge(key, now):
        """Count one request against the key's limit: (requests left or REFUSED, window, reset text).
        The request path inlines the same steps; this serves the rarer page-file misses."""
        if not hour_clock.start <= now < hour_clock.end:
            hour_clock.roll(now)
        return await claims.spend_request(key, now), hour_clock.window, hour_clock.reset_text

    async def serve_page_file(request, handler, key, facts, now):
        """A key's request for the ComfyUI page or one of its files (scripts,
        styles, fonts, images, extension files, the sign-in page). A page load
        is hundreds of these: they are not charged to the key's limit and are
        counted apart, as page loads. A miss (no such file: the static
        fallback's 404, or any other error) is charged and counted as a
        request, so misses are not free."""
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return await charge_miss(exc, key, facts, now, True)
            if response.status >= 400 or (facts.page_directory is not None and isinstance(response, web.FileResponse)
                                          and await is_missing(request, facts.page_directory)):
                return await charge_miss(response, key, facts, now, False)
            if not hour_clock.start <= now < hour_clock.end:
                hour_clock.roll(now)
            usage.record(facts.page_cells, key.pk, True, time.time() - now, now, hour_clock.window)
            return response
        except StorageUnavailable:
            return error(503, "AUTH_UNAVAILABLE", DATABASE_UNAVAILABLE_MESSAGE)

    async def is_missing(request, directory) -> bool:
        """Whether a static route's file response names no file. aiohttp looks
        the file up only as it sends the response, too late to charge a miss or
        refuse it with 429; so look first, off the event loop, once per path
        (a page reloads the same files). A file deleted after it was seen is
        answered 404 by aiohttp, uncharged: web roots do not change while
        ComfyUI runs."""
        path = request.path
        if path in known_files:
            return False
        file = os.path.join(directory, request.match_info["filename"])
        if not await asyncio.get_running_loop().run_in_executor(None, os.path.isfile, file):
            return True
        if len(known_files) >= KNOWN_FILES_MAX:
            known_files.clear()
        known_files.add(path)
        return False

    async def charge_miss(miss, key, facts, now, raised: bool):
        remaining, window, reset_text = await charge(key, now)
        cells = facts.usage_cells
        if cells is None:
            cells = usage.cells_for(facts.usage_key)
        usage.record(cells, key.pk, False, time.time() - now, now, window)
        if remaining == REFUSED:
            return too_many(key, window + WINDOW_SECONDS, now)
        miss.headers[LIMIT_HEADER] = str(key.rate_limit)
        miss.headers[REMAINING_HEADER] = str(remaining)
        miss.headers[RESET_HEADER] = reset_text
        if raised:
            raise miss
        return miss

    @web.middleware
    async def api_auth_middleware(request, handler):
        if runtime.refusing is not None:
            return error(503, "AUTH_UNAVAILABLE", UNAVAILABLE_MESSAGE)
        if query_tokens and "token=" in request.query_string:
            request = without_query_token(request)  # the URL's key moves to a header, out of the handler's sight
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
            if facts.page:
                handler = functools.partial(_guard_frames, handler)
            try:
                principal = identify(request, headers, now)
                need = facts.need
                level = need.level if need.query_rule is None else need.level_for(request.query)
                decision = runtime.policy.decide(principal, need, level)
                if decision != access.ALLOW:
                    if decision == access.FORBIDDEN and principal.key is not None:
                        note_refused(principal.key, facts, now)
                    raise Denied(refuse(request, principal, decision, level))
            except Denied as denied:
                return denied.response
            key = principal.key
            if key is None and not facts.wants_context and facts.around is None:
                return await handler(request)  # anonymous or admin on a ComfyUI route: nothing to count
            if facts.page_cells is not None:
                return await serve_page_file(request, handler, key, facts, now)
        # Only the package's own routes read the principal from the context.
        token = current_principal.set(principal) if facts.wants_context else None
        try:
            if key is None:
                if facts.around is not None:
                    return await facts.around(request, handler, principal, now)
                return await handler(request)
            # A request authenticated by a key: count it, limit it, say so in headers.
            if not hour_clock.start <= now < hour_clock.end:
                hour_clock.roll(now)
            window, reset_text = hour_clock.window, hour_clock.reset_text
            quota = claims.quota
            if quota is None:
                remaining = limiter.take(key.pk, key.rate_limit, window)
            else:
                remaining = quota.take(key.pk, key.rate_limit, window)
                if remaining is None:
                    remaining = await claims.take_shared(key, window, now)
                if quota.running_low:
                    claims.prefetch_running_low(now)
            cells = facts.usage_cells
            if cells is None:  # an unmatched request: its facts, and so its cells, are not kept
                cells = usage.cells_for(facts.usage_key)
            if remaining == REFUSED:
                usage.record(cells, key.pk, False, 0.0, now, window)
                return too_many(key, window + WINDOW_SECONDS, now)
            status = 500
            try:
                if facts.around is not None:
                    response = await facts.around(request, handler, principal, now)
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
                usage.record(cells, key.pk, status < 400, time.time() - now, now, window)
        except StorageUnavailable:
            return error(503, "AUTH_UNAVAILABLE", DATABASE_UNAVAILABLE_MESSAGE)
        finally:
            if token is not None:
                current_principal.reset(token)

    return api_auth_middleware
