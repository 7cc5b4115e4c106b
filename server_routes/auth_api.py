"""Sign-in, sign-out, status, the admin password, the setup code, and the login page."""

import os
import time

from aiohttp import web

from ..auth import keys as key_format
from ..auth import validation
from ..runtime import StorageUnavailable
from .login_page import LOGIN_PAGE
from .keys_api import audit
from .middleware import SESSION_COOKIE, client_address, current_principal, is_https
from .responses import BodyError, error, invalid, read_json

LOGIN_FIELDS = frozenset({"password", "api_key"})
SETUP_FIELDS = frozenset({"code", "password"})
PASSWORD_MANAGED = ("the admin password is set by COMFYUI_API_AUTH_ADMIN_PASSWORD and is changed there "
                    "(then restart ComfyUI); unset the variable to manage it here")
OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


def _client(runtime, request) -> str:
    return client_address(request, runtime.trusted_proxies)


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
            "admin_password_set": runtime.admin_password_set,
            "admin_password_managed": runtime.admin_password_managed,
            # what a trusted local request gets on this server: "bootstrap", "on" or "off"
            "trust_localhost": runtime.local_trust,
            # the caller is a local request that may manage non-admin keys (bootstrap)
            "local_bootstrap": principal.is_bootstrap,
            # a setup code was printed to the console and can still set the admin password
            "setup_available": runtime.setup_available,
            "login_url": "/login",
        }, headers={"Cache-Control": "no-store"})

    async def login(self, request):
        runtime = self.runtime
        client = _client(runtime, request)
        wait = runtime.login_throttle.retry_after(client, time.time())
        if wait:
            return error(429, "TOO_MANY_ATTEMPTS", f"too many failed sign-ins; try again in {wait} s",
                         headers={"Retry-After": str(wait)}, reset_in=wait)
        try:
            body = await read_json(request, 4096)
            kind, key_pk = await self._check_credentials(body)
        except BodyError as exc:
            return exc.response
        except validation.InvalidInput as exc:
            return invalid(exc)
        method = "password" if "password" in body else "api_key"
        if kind is None:
            runtime.login_throttle.failed(client, time.time())
            audit(runtime, request, "sign_in_failed", method=method)
            return error(401, "INVALID_CREDENTIALS", "wrong password or API key")
        runtime.login_throttle.succeeded(client)
        target = runtime.keys_by_pk[key_pk].key_id if key_pk is not None else "admin"
        audit(runtime, request, "sign_in", target, method=method)
        token = await runtime.open_session(kind, key_pk, client)
        body = {"ok": True, "kind": kind}
        if key_pk is not None:
            record = runtime.keys_by_pk.get(key_pk)
            body["kind"] = "admin" if record is not None and record.is_admin else "key"
        response = web.json_response(body, headers={"Cache-Control": "no-store"})
        self._set_cookie(request, response, token)
        return response

    def _set_cookie(self, request, response, token):
        response.set_cookie(SESSION_COOKIE, token, max_age=self.runtime.settings.session_ttl, path="/",
                            httponly=True, samesite="Lax", secure=is_https(request, self.runtime.trusted_proxies))

    async def _check_credentials(self, body):
        """(session kind, key pk) for good credentials, (None, None) otherwise."""
        if not isinstance(body, dict):
            raise validation.InvalidInput(None, "request body must be a JSON object", "INVALID_BODY")
        unknown = sorted(set(body) - LOGIN_FIELDS)
        if unknown:
            raise validation.InvalidInput(unknown[0], f"unknown field '{unknown[0]}'", "UNKNOWN_FIELD")
        if len(body) != 1:
            raise validation.InvalidInput(None, "send exactly one of 'password' or 'api_key'", "MISSING_FIELD")
        (field, value), = body.items()
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise validation.InvalidInput(field, f"'{field}' must be a non-empty string", "INVALID_FIELD")
        if field == "password":
            if await self.runtime.check_admin_password(value):
                return "admin", None
            return None, None
        principal = self.runtime.key_principals.get(key_format.digest_key(value))
        record = principal.key if principal is not None else None
        if record is None or not record.is_active:
            return None, None
        # A key session follows the key: disabling or unscoping it takes effect.
        return "key", record.pk

    async def logout(self, request):
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await self.runtime.end_session(token)
            audit(self.runtime, request, "sign_out")
        response = web.json_response({"ok": True, "message": "signed out"}, headers={"Cache-Control": "no-store"})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def set_password(self, request):
        try:
            body = await read_json(request, 4096)
            if not isinstance(body, dict) or set(body) != {"password"}:
                raise validation.InvalidInput("password", "send exactly {\"password\": \"...\"}", "INVALID_BODY")
            password = validation.validate_password(body["password"])
        except BodyError as exc:
            return exc.response
        except validation.InvalidInput as exc:
            return invalid(exc)
        if self.runtime.admin_password_managed:
            return error(409, "PASSWORD_MANAGED_BY_ENVIRONMENT", PASSWORD_MANAGED)
        await self.runtime.set_admin_password(password)
        audit(self.runtime, request, "password_set")
        return web.json_response({"ok": True, "message": "admin password set"})

    async def setup(self, request):
        """Set the first admin password with the setup code from the console, and sign in."""
        runtime = self.runtime
        client = _client(runtime, request)
        wait = runtime.login_throttle.retry_after(client, time.time())
        if wait:
            return error(429, "TOO_MANY_ATTEMPTS", f"too many failed attempts; try again in {wait} s",
                         headers={"Retry-After": str(wait)}, reset_in=wait)
        try:
            code, password = self._setup_fields(await read_json(request, 4096))
        except BodyError as exc:
            return exc.response
        except validation.InvalidInput as exc:
            return invalid(exc)
        if not runtime.setup_available:
            return error(409, "SETUP_NOT_AVAILABLE", "an admin exists already (or the setup code was used): "
                         "sign in instead; a server prints a new setup code at start only while no admin exists")
        spent = runtime.take_setup_code(code)
        if spent is None:
            runtime.login_throttle.failed(client, time.time())
            audit(runtime, request, "setup_failed")
            return error(401, "INVALID_SETUP_CODE", "wrong setup code (it is in the ComfyUI console)")
        runtime.login_throttle.succeeded(client)
        try:
            await runtime.set_admin_password(password)
        except StorageUnavailable:
            runtime.give_back_setup_code(spent)
            raise
        audit(runtime, request, "password_set", "admin", method="setup_code")
        token = await runtime.open_session("admin", None, client)
        response = web.json_response({"ok": True, "kind": "admin", "message": "admin password set; signed in"},
                                     headers={"Cache-Control": "no-store"})
        self._set_cookie(request, response, token)
        return response

    @staticmethod
    def _setup_fields(body):
        if not isinstance(body, dict):
            raise validation.InvalidInput(None, "request body must be a JSON object", "INVALID_BODY")
        unknown = sorted(set(body) - SETUP_FIELDS)
        if unknown:
            raise validation.InvalidInput(unknown[0], f"unknown field '{unknown[0]}'", "UNKNOWN_FIELD")
        code = body.get("code")
        if not isinstance(code, str) or not code.strip() or len(code) > 64:
            raise validation.InvalidInput("code", "'code' must be the setup code from the console", "INVALID_FIELD")
        if "password" not in body:
            raise validation.InvalidInput("password", "'password' is required", "MISSING_FIELD")
        return code, validation.validate_password(body["password"])

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
