"""Sign-in, sign-out, status, the admin password, the setup code, and the login page."""

import os
import time
from functools import partial

from aiohttp import web

from ..core import keys as key_format
from ..core import validation
from ..core.validation import AUTH_BODY_MAX_BYTES
from ..core.ratelimit import REFUSED, WINDOW_SECONDS, window_start
from ..service.dbthread import StorageUnavailable
from .login_page import LOGIN_PAGE
from .keys_api import audit
from ..core.principals import secret_generation
from .identity import KEY_REFUSALS, SESSION_COOKIE, client_address, is_https, key_problem
from .middleware import current_principal, too_many
from .responses import BodyError, error, invalid, read_json

PASSWORD_MANAGED = ("the admin password is set by COMFYUI_API_AUTH_ADMIN_PASSWORD and is changed there "
                    "(then restart ComfyUI); unset the variable to manage it here")
OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


def _client(runtime, request) -> str:
    return client_address(request, runtime.trusted_proxies)


def _too_many_attempts(wait: int):
    return error(429, "TOO_MANY_ATTEMPTS", f"too many failed sign-ins; try again in {wait} s",
                 headers={"Retry-After": str(wait)}, reset_in=wait)


def _key_sign_in(runtime, request, presented: str, now: float):
    """(the principal of a usable key, None); (None, None) for a wrong, disabled
    or rotated-away secret (a wrong attempt); (None, the refusal) for an expired
    key, or one used from an address its allowlist does not have. A key
    session follows the key: disabling, unscoping or rotating it takes effect."""
    principal = runtime.keys.principal_of(key_format.digest_key(presented))
    if principal is None:
        return None, None
    problem = key_problem(principal, request, now, runtime.trusted_proxies)
    if problem in ("KEY_EXPIRED", "IP_NOT_ALLOWED"):
        return None, KEY_REFUSALS[problem]()
    return (principal, None) if problem is None else (None, None)


async def _resolved(value):
    return value


def _own_session(request):
    """The caller's session token, if it signed in with one (the middleware let it through)."""
    principal = current_principal.get()
    return request.cookies.get(SESSION_COOKIE) if principal.via == "session" else None


class _CountedAttempt:
    """A sign-in or setup attempt, counted as a failure the moment it arrives,
    before anything is awaited (the body, the database, bcrypt), so concurrent
    or slow-body attempts cannot all pass the check. Leaving the ``with``
    gives it back unless ``wrong()`` said the secret was checked and wrong.
    ``wait`` > 0: the address is out of attempts and nothing was counted."""

    def __init__(self, throttle, client: str, now: float):
        self.throttle, self.client, self.now = throttle, client, now
        self.wait = throttle.reserve(client, now)
        self._wrong = False

    def wrong(self):
        self._wrong = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if not self._wrong:
            self.throttle.refund(self.client, self.now)


async def _read_body(request, parse):
    """(the parsed body, None), or (None, the 400 or 413 answer)."""
    try:
        return parse(await read_json(request, AUTH_BODY_MAX_BYTES)), None
    except BodyError as exc:
        return None, exc.response
    except validation.InvalidInput as exc:
        return None, invalid(exc)


class AuthApi:
    def __init__(self, runtime):
        self.runtime = runtime

    async def login_page(self, request):
        # The anti-framing headers come from the middleware (it serves every page).
        return web.Response(text=LOGIN_PAGE, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def status(self, request):
        principal = current_principal.get()
        runtime = self.runtime
        return web.json_response({
            "mode": runtime.settings.mode,
            "authenticated": principal.has_identity,
            "is_admin": principal.is_admin,
            "principal": principal.describe(),
            "admin_password_set": runtime.keys.admin_password_set,
            "admin_password_managed": runtime.sign_in.admin_password_managed,
            # what a trusted local request gets on this server: "bootstrap", "on" or "off"
            "trust_localhost": runtime.local_trust,
            # the caller is a local request that may manage non-admin keys (bootstrap)
            "local_bootstrap": principal.is_bootstrap,
            # a setup code was printed to the console and can still set the admin password
            "setup_available": runtime.sign_in.setup_available,
            "login_url": "/login",
        }, headers={"Cache-Control": "no-store"})

    async def login(self, request):
        runtime = self.runtime
        client = _client(runtime, request)
        started = time.time()
        counted = _CountedAttempt(runtime.sign_in.login_throttle, client, started)
        if counted.wait:
            return _too_many_attempts(counted.wait)
        with counted:
            parsed, refusal = await _read_body(request, validation.parse_login)
            if refusal is not None:
                return refusal
            field, secret = parsed
            key_principal = None
            if field == "password":
                key = None
                outcome, attempt = await self._check_password(client, secret)
            else:
                key_principal, refusal = _key_sign_in(runtime, request, secret, started)
                if refusal is not None:
                    return refusal
                key = key_principal.key if key_principal is not None else None
                outcome, attempt = await self._evaluate(client, partial(_resolved, key is not None))
            if isinstance(outcome, web.Response):
                return outcome
            method = "password" if field == "password" else "api_key"
            if not outcome:
                counted.wrong()
                audit(runtime, request, "sign_in_failed", method=method)
                return error(401, "INVALID_CREDENTIALS", "wrong password or API key")
            if key is not None and await runtime.claims.spend_request(key, started) == REFUSED:
                await runtime.sign_in.uncount_sign_in_attempt(attempt)
                return too_many(key, window_start(started) + WINDOW_SECONDS, started)
            audit(runtime, request, "sign_in", key.key_id if key is not None else "admin", method=method)
            # The good attempt is given back in the session's own transaction.
            token = await runtime.sign_in.open_session(
                "admin" if key is None else "key", key.pk if key is not None else None, client, attempt,
                secret_generation(key_principal) if key_principal is not None else 0)
        body = {"ok": True, "kind": "admin" if key is None or key.is_admin else "key"}
        response = web.json_response(body, headers={"Cache-Control": "no-store"})
        self._set_cookie(request, response, token)
        return response

    def _set_cookie(self, request, response, token):
        response.set_cookie(SESSION_COOKIE, token, max_age=self.runtime.settings.session_ttl, path="/",
                            httponly=True, samesite="Lax", secure=is_https(request, self.runtime.trusted_proxies))

    async def _check_password(self, client, password):
        """Like ``_evaluate``, within the cap on bcrypt checks in flight: past
        it, (a 429, None) at once; the CPU is the scarce thing a flood spends."""
        slots = self.runtime.sign_in.password_checks
        if not slots.take():
            return error(429, "SIGN_IN_BUSY", "too many sign-ins are being checked at once; try again",
                         headers={"Retry-After": "1"}, reset_in=1), None
        try:
            return await self._evaluate(client, partial(self.runtime.sign_in.check_admin_password, password))
        finally:
            slots.give_back()

    async def _evaluate(self, client, check):
        """Count the attempt where every process sharing the database sees it,
        then run ``check``: (its verdict, the attempt's id), or (a 429, None)
        when other processes used up this address's attempts (``check`` never runs)."""
        attempt, wait = await self.runtime.sign_in.count_sign_in_attempt(client)
        if attempt is None:
            return _too_many_attempts(wait), None
        return await check(), attempt

    async def logout(self, request):
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await self.runtime.sign_in.end_session(token)
            audit(self.runtime, request, "sign_out")
        response = web.json_response({"ok": True, "message": "signed out"}, headers={"Cache-Control": "no-store"})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def set_password(self, request):
        password, refusal = await _read_body(request, validation.parse_password_change)
        if refusal is not None:
            return refusal
        if self.runtime.sign_in.admin_password_managed:
            return error(409, "PASSWORD_MANAGED_BY_ENVIRONMENT", PASSWORD_MANAGED)
        # Sessions opened with the old password end; the caller's own stays.
        ended = await self.runtime.sign_in.set_admin_password(password, keep_token=_own_session(request))
        audit(self.runtime, request, "password_set", sessions_ended=ended)
        return web.json_response({"ok": True, "message": "admin password set", "sessions_ended": ended})

    async def end_all_sessions(self, request):
        """Sign out everywhere: every browser session, admin and key; the
        caller's own too unless ``{"keep_current": true}``."""
        try:
            keep_current = validation.parse_end_all(
                await read_json(request, AUTH_BODY_MAX_BYTES) if request.body_exists else {})
        except BodyError as exc:
            return exc.response
        except validation.InvalidInput as exc:
            return invalid(exc)
        own = _own_session(request)
        keep = own if keep_current else None
        ended = await self.runtime.sign_in.end_all_sessions(keep_token=keep)
        audit(self.runtime, request, "sessions_ended", "all", ended=ended, kept_current=keep is not None)
        response = web.json_response({"ok": True, "message": f"{ended} sessions ended", "ended": ended},
                                     headers={"Cache-Control": "no-store"})
        if own and keep is None:
            response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def setup(self, request):
        """Set the first admin password with the setup code from the console, and sign in."""
        runtime = self.runtime
        client = _client(runtime, request)
        counted = _CountedAttempt(runtime.sign_in.login_throttle, client, time.time())
        if counted.wait:
            return _too_many_attempts(counted.wait)
        with counted:
            parsed, refusal = await _read_body(request, validation.parse_setup)
            if refusal is not None:
                return refusal
            code, password = parsed
            if not runtime.sign_in.setup_available:
                return error(409, "SETUP_NOT_AVAILABLE", "an admin exists already (or the setup code was used): "
                             "sign in instead; a server prints a new setup code at start only while no admin exists")
            spent = runtime.sign_in.take_setup_code(code)
            if spent is None:
                counted.wrong()
                audit(runtime, request, "setup_failed")
                return error(401, "INVALID_SETUP_CODE", "wrong setup code (it is in the ComfyUI console)")
        try:
            await runtime.sign_in.set_admin_password(password)
        except StorageUnavailable:
            runtime.sign_in.give_back_setup_code(spent)
            raise
        audit(runtime, request, "password_set", "admin", method="setup_code")
        token = await runtime.sign_in.open_session("admin", None, client)
        response = web.json_response({"ok": True, "kind": "admin", "message": "admin password set; signed in"},
                                     headers={"Cache-Control": "no-store"})
        self._set_cookie(request, response, token)
        return response

    async def openapi(self, request):
        """The OpenAPI 3 description of every route this package adds (admins only)."""
        return web.FileResponse(OPENAPI_PATH, headers={"Content-Type": "application/json"})

    def register(self, routes):
        routes.get("/auth/openapi.json")(self.openapi)
        routes.get("/login")(self.login_page)
        routes.get("/auth/status")(self.status)
        routes.post("/auth/login")(self.login)
        routes.post("/auth/logout")(self.logout)
        routes.put("/auth/password")(self.set_password)
        routes.post("/auth/setup")(self.setup)
        routes.post("/auth/sessions/end-all")(self.end_all_sessions)
