"""Sign-in, sign-out, status, the admin password, and the login page."""

import os
import time

from aiohttp import web

from ..auth import keys as key_format
from ..auth import validation
from .login_page import LOGIN_PAGE
from .keys_api import audit
from .middleware import SESSION_COOKIE, current_principal
from .responses import BodyError, error, invalid, read_json

LOGIN_FIELDS = frozenset({"password", "api_key"})
OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


def _client(request) -> str:
    return request.remote or "unknown"


class AuthApi:
    def __init__(self, runtime):
        self.runtime = runtime

    async def login_page(self, request):
        return web.Response(text=LOGIN_PAGE, content_type="text/html",
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    async def status(self, request):
        principal = current_principal.get()
        runtime = self.runtime
        return web.json_response({
            "mode": runtime.settings.mode,
            "authenticated": not principal.is_anonymous,
            "is_admin": principal.is_admin,
            "principal": principal.describe(),
            "admin_password_set": runtime.admin_password_set,
            "trust_localhost": runtime.trusted_local_possible,
            "login_url": "/login",
        }, headers={"Cache-Control": "no-store"})

    async def login(self, request):
        runtime = self.runtime
        client = _client(request)
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
        response.set_cookie(SESSION_COOKIE, token, max_age=runtime.settings.session_ttl, path="/",
                            httponly=True, samesite="Lax", secure=request.secure)
        return response

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
        await self.runtime.set_admin_password(password)
        audit(self.runtime, request, "password_set")
        return web.json_response({"ok": True, "message": "admin password set"})

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
