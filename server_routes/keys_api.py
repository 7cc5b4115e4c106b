"""The key API: create, list, read, update, delete, and the caller's usage.

Admin-only routes are guarded by the access policy in the middleware; the
handlers here only parse, delegate and format.
"""

from aiohttp import web

from ..core import validation
from ..core.principals import KeyRecord
from .identity import client_address
from .middleware import LOCAL_BOOTSTRAP_LIMIT, current_principal
from .responses import BodyError, error, invalid, read_json

CREATED_MESSAGE = "API key created. Save this key - it will not be shown again."
ROTATED_MESSAGE = "API key rotated. Save the new key - it will not be shown again."
KEY_ID_MAX = 32  # the key_id column's size (storage.models.ApiKey); keys.new_key makes 16
INT_DIGITS_MAX = 19  # digits of the largest 64-bit integer: a longer query number is refused unparsed
AUDIT_PAGE_DEFAULT = 100  # events per GET /audit page
AUDIT_PAGE_MAX = 1000
AUDIT_BEFORE_MAX = 2**62  # ``before`` is an event id: a BIGINT


def key_json(runtime, record: KeyRecord, pending_last_used: dict | None = None,
             requests_this_hour: dict | None = None) -> dict:
    """``requests_this_hour`` is ``runtime.key_store.requests_this_hour(...)`` (none: a new key, 0)."""
    return {
        "key_id": record.key_id,
        "name": record.name,
        "prefix": record.prefix,
        "created_at": record.created_at,
        "last_used": runtime.key_store.last_used_of(record, pending_last_used),
        "rate_limit": record.rate_limit,
        "is_active": record.is_active,
        "metadata": record.metadata,
        "scopes": list(record.scopes),
        "job_limits": {"prompts_per_hour": record.prompts_per_hour, "max_waiting": record.max_waiting},
        "requests_this_hour": (requests_this_hour or {}).get(record.pk, 0),
        **lifecycle_json(record, runtime.clock()),
    }


def lifecycle_json(record: KeyRecord, now: float) -> dict:
    """Expiry, allowlist and a rotation's grace period, as the key's holder and admins see them."""
    previous_until = record.previous_valid_until
    return {
        "expires_at": record.expires_at,
        "expired": record.is_expired(now),
        "allowed_ips": list(record.allowed_ips),
        # when the secret it had before its last rotation stops working; null: it has none that works
        "previous_key_valid_until": previous_until if previous_until is not None and previous_until > now else None,
    }


def actor_of(principal) -> str:
    """How the audit trail names whoever acted: never a secret."""
    if principal.key is not None:
        return f"key:{principal.key.key_id}"
    return f"{principal.kind}:{principal.via}"


def audit(runtime, request, action, target="", **detail):
    runtime.audit(action, actor_of(current_principal.get()), client_address(request, runtime.trusted_proxies),
                  target, **detail)


def _plausible_key_id(key_id: str) -> bool:
    """key_ids are short base62 strings; anything else cannot exist (and never reaches the database)."""
    return 0 < len(key_id) <= KEY_ID_MAX and key_id.isascii() and key_id.isalnum()


def _not_found(key_id: str):
    shown = "that key_id" if key_id.startswith("comfy_") or not key_id.isalnum() else f"key_id '{key_id[:KEY_ID_MAX]}'"
    return error(404, "KEY_NOT_FOUND", f"no key with {shown}")


def _beyond_bootstrap(scopes=(), record=None):
    """403 when the caller is the local bootstrap principal and the change would
    make, change or remove an admin key (it manages non-admin keys only); else None."""
    if not current_principal.get().is_bootstrap:
        return None
    if "admin" in (scopes or ()) or (record is not None and record.is_admin):
        return error(403, "SCOPE_REQUIRED", LOCAL_BOOTSTRAP_LIMIT, required_scope="admin")
    return None


def _bounded_int(text, field, default, low, high):
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > INT_DIGITS_MAX or not low <= int(text) <= high:
        raise validation.InvalidInput(field, f"'{field}' must be an integer from {low} to {high}")
    return int(text)


class KeysApi:
    def __init__(self, runtime):
        self.runtime = runtime

    async def _body(self, request):
        return await read_json(request, self.runtime.settings.max_body_bytes)

    async def create(self, request):
        try:
            fields = validation.parse_create(await self._body(request), self.runtime.clock())
        except BodyError as exc:
            return exc.response
        except validation.InvalidInput as exc:
            return invalid(exc)
        refusal = _beyond_bootstrap(fields["scopes"])
        if refusal is not None:
            return refusal
        record, plaintext = await self.runtime.key_store.create_key(**fields)
        audit(self.runtime, request, "key_create", record.key_id, name=record.name,
              rate_limit=record.rate_limit, scopes=list(record.scopes), expires_at=record.expires_at,
              allowed_ips=list(record.allowed_ips))
        body = key_json(self.runtime, record)
        body.update(api_key=plaintext, message=CREATED_MESSAGE)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def list(self, request):
        records = await self.runtime.key_store.list_keys()
        pending = self.runtime.usage.pending_last_used()
        counts = await self.runtime.key_store.requests_this_hour(record.pk for record in records)
        return web.json_response({"keys": [key_json(self.runtime, record, pending, counts) for record in records]})

    async def read(self, request):
        key_id = request.match_info["key_id"]
        try:
            days = validation.parse_days(request.query.get("days"))
        except validation.InvalidInput as exc:
            return invalid(exc)
        record = await self.runtime.key_store.get_key(key_id) if _plausible_key_id(key_id) else None
        if record is None:
            return _not_found(key_id)
        body = key_json(self.runtime, record, None, await self.runtime.key_store.requests_this_hour([record.pk]))
        body["usage_stats"] = await self.runtime.key_store.usage_stats(record, days)
        return web.json_response(body)

    async def update(self, request):
        key_id = request.match_info["key_id"]
        try:
            changes = validation.parse_update(await self._body(request))
        except BodyError as exc:
            return exc.response
        except validation.InvalidInput as exc:
            return invalid(exc)
        if current_principal.get().is_bootstrap:
            current = await self.runtime.key_store.get_key(key_id) if _plausible_key_id(key_id) else None
            refusal = _beyond_bootstrap(changes.get("scopes"), current)
            if refusal is not None:
                return refusal
        record = await self.runtime.key_store.update_key(key_id, changes) if _plausible_key_id(key_id) else None
        if record is None:
            return _not_found(key_id)
        action = {False: "key_disable", True: "key_enable"}.get(changes.get("is_active"), "key_update")
        audit(self.runtime, request, action, key_id, fields=sorted(changes))
        body = key_json(self.runtime, record, None, await self.runtime.key_store.requests_this_hour([record.pk]))
        body["message"] = "API key updated."
        return web.json_response(body)

    async def rotate(self, request):
        """A new secret for the key, shown once; the old one works ``grace_seconds`` more."""
        key_id = request.match_info["key_id"]
        try:
            grace = validation.parse_rotate(await self._body(request))
        except BodyError as exc:
            return exc.response
        except validation.InvalidInput as exc:
            return invalid(exc)
        if not _plausible_key_id(key_id):
            return _not_found(key_id)
        if current_principal.get().is_bootstrap:
            refusal = _beyond_bootstrap(record=await self.runtime.key_store.get_key(key_id))
            if refusal is not None:
                return refusal
        record, plaintext = await self.runtime.key_store.rotate_key(key_id, grace)
        if record is None:
            return _not_found(key_id)
        audit(self.runtime, request, "key_rotate", key_id, grace_seconds=grace)
        body = key_json(self.runtime, record, None, await self.runtime.key_store.requests_this_hour([record.pk]))
        body.update(api_key=plaintext, message=ROTATED_MESSAGE)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def delete(self, request):
        key_id = request.match_info["key_id"]
        if current_principal.get().is_bootstrap:
            current = await self.runtime.key_store.get_key(key_id) if _plausible_key_id(key_id) else None
            refusal = _beyond_bootstrap(record=current)
            if refusal is not None:
                return refusal
        record = await self.runtime.key_store.delete_key(key_id) if _plausible_key_id(key_id) else None
        if record is None:
            return _not_found(key_id)
        audit(self.runtime, request, "key_delete", key_id, name=record.name)
        return web.json_response({"key_id": key_id, "message": "API key deleted; it no longer works."})

    async def usage(self, request):
        principal = current_principal.get()
        try:
            days = validation.parse_days(request.query.get("days"))
        except validation.InvalidInput as exc:
            return invalid(exc)
        record = principal.key
        return web.json_response({
            "key_id": record.key_id,
            "key_name": record.name,
            "scopes": list(record.scopes),
            **lifecycle_json(record, self.runtime.clock()),
            "rate_limit": record.rate_limit,
            "job_limits": {"prompts_per_hour": record.prompts_per_hour, "max_waiting": record.max_waiting},
            "requests_this_hour": (await self.runtime.key_store.requests_this_hour([record.pk]))[record.pk],
            "usage_stats": await self.runtime.key_store.usage_stats(record, days),
        })

    async def audit_trail(self, request):
        try:
            limit = _bounded_int(request.query.get("limit"), "limit", AUDIT_PAGE_DEFAULT, 1, AUDIT_PAGE_MAX)
            before = _bounded_int(request.query.get("before"), "before", None, 1, AUDIT_BEFORE_MAX)
        except validation.InvalidInput as exc:
            return invalid(exc)
        return web.json_response({"events": await self.runtime.audit_events(limit, before)})

    def register(self, routes):
        routes.post("/keys")(self.create)
        routes.get("/keys")(self.list)
        routes.get("/keys/{key_id}")(self.read)
        routes.patch("/keys/{key_id}")(self.update)
        routes.delete("/keys/{key_id}")(self.delete)
        routes.post("/keys/{key_id}/rotate")(self.rotate)
        routes.get("/usage")(self.usage)
        routes.get("/audit")(self.audit_trail)
