"""Strict schemas for request bodies and query values.

Each check raises :class:`InvalidInput` naming the field, so the HTTP layer
answers 400 before anything reaches the database.
"""

import json
import math
import time
import unicodedata

from .addresses import BadAllowlist, validate_allowed_ips as _allowlist
from .scopes import DEFAULT_SCOPES, KNOWN_SCOPES

NAME_MAX = 100
RATE_LIMIT_MAX = 1_000_000_000
METADATA_MAX_BYTES = 16 * 1024
METADATA_MAX_DEPTH = 8
DEFAULT_RATE_LIMIT = 100
DAYS_MAX = 366
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# Sign-in, setup, password and sign-out-everywhere bodies: a few short fields.
AUTH_BODY_MAX_BYTES = 4096
SECRET_MAX = 1024  # longest password or API key a sign-in may send (a key is 52; bcrypt reads 72 bytes)
SETUP_CODE_MAX = 64  # longest setup code as typed (19 characters with its dashes; spaces allowed)
PASSWORD_MIN = 8
PASSWORD_MAX_BYTES = 72  # bcrypt reads only this many

LOGIN_FIELDS = frozenset({"password", "api_key"})
SETUP_FIELDS = frozenset({"code", "password"})
CREATE_FIELDS = frozenset({"name", "rate_limit", "metadata", "scopes", "job_limits", "expires_at",
                           "expires_in_days", "allowed_ips"})
UPDATE_FIELDS = frozenset({"name", "rate_limit", "metadata", "scopes", "is_active", "job_limits", "expires_at",
                           "allowed_ips"})
# PATCH fields whose null is a value (never expires), not "unchanged".
NULLABLE_UPDATE_FIELDS = frozenset({"expires_at"})
ROTATE_FIELDS = frozenset({"grace_seconds"})
EXPIRES_AT_MAX = 253402300799  # 9999-12-31T23:59:59Z
EXPIRES_IN_DAYS_MAX = 36500
GRACE_SECONDS_MAX = 30 * 86400
JOB_LIMIT_FIELDS = ("prompts_per_hour", "max_waiting")


class InvalidInput(ValueError):
    def __init__(self, field: str | None, message: str, code: str = "INVALID_FIELD"):
        super().__init__(message)
        self.field = field
        self.code = code


def _require_object(body) -> dict:
    if not isinstance(body, dict):
        raise InvalidInput(None, "request body must be a JSON object", "INVALID_BODY")
    return body


def _refuse_unknown(body: dict, allowed: frozenset):
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field '{unknown[0]}'", "UNKNOWN_FIELD")


def validate_name(value) -> str:
    if not isinstance(value, str):
        raise InvalidInput("name", "'name' must be a string")
    name = value.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise InvalidInput("name", f"'name' must be 1 to {NAME_MAX} characters after trimming")
    if any(unicodedata.category(char) in ("Cc", "Cs") or char in BIDI_CONTROLS for char in name):
        raise InvalidInput("name", "'name' must not contain control characters")
    return name


def validate_rate_limit(value) -> int:
    # bool is a subclass of int: refuse it explicitly, as any typo would be.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("rate_limit", "'rate_limit' must be an integer (requests per hour)")
    if not 0 <= value <= RATE_LIMIT_MAX:
        raise InvalidInput("rate_limit", f"'rate_limit' must be from 0 to {RATE_LIMIT_MAX}")
    return value


def _depth(value, level=1) -> int:
    if level > METADATA_MAX_DEPTH + 1:
        return level
    if isinstance(value, dict):
        return max([level] + [_depth(item, level + 1) for item in value.values()])
    if isinstance(value, list):
        return max([level] + [_depth(item, level + 1) for item in value])
    return level - 1


def validate_metadata(value) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput("metadata", "'metadata' must be a JSON object")
    if _depth(value) > METADATA_MAX_DEPTH:
        raise InvalidInput("metadata", f"'metadata' must not nest deeper than {METADATA_MAX_DEPTH}")
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidInput("metadata", "'metadata' must be plain JSON (no NaN, valid text)") from None
    if size > METADATA_MAX_BYTES:
        raise InvalidInput("metadata", f"'metadata' must be at most {METADATA_MAX_BYTES} bytes as JSON")
    return value


def validate_scopes(value) -> list:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput("scopes", "'scopes' must be a list of strings")
    unknown = [item for item in value if item not in KNOWN_SCOPES]
    if unknown:
        raise InvalidInput("scopes", f"'scopes' has an unknown scope '{unknown[0]}'; known: {', '.join(KNOWN_SCOPES)}")
    if not value:
        # A key without a scope could do nothing; say so rather than store one.
        raise InvalidInput("scopes", f"'scopes' must name at least one of: {', '.join(KNOWN_SCOPES)}")
    return sorted(set(value), key=KNOWN_SCOPES.index)


def validate_job_limits(value) -> dict:
    """``{"prompts_per_hour": int|null, "max_waiting": int|null}``; null or absent = unlimited."""
    if not isinstance(value, dict):
        raise InvalidInput("job_limits", "'job_limits' must be an object")
    unknown = sorted(set(value) - set(JOB_LIMIT_FIELDS))
    if unknown:
        raise InvalidInput("job_limits", f"'job_limits' has an unknown field '{unknown[0]}'", "UNKNOWN_FIELD")
    limits = {}
    for name in JOB_LIMIT_FIELDS:
        item = value.get(name)
        if item is not None and (isinstance(item, bool) or not isinstance(item, int)
                                 or not 0 <= item <= RATE_LIMIT_MAX):
            raise InvalidInput("job_limits", f"'job_limits.{name}' must be null or an integer from 0 to {RATE_LIMIT_MAX}")
        limits[name] = item
    return limits


def validate_is_active(value) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("is_active", "'is_active' must be true or false")
    return value


def validate_expires_at(value) -> float | None:
    """Unix seconds (a number), or None: never expires."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= EXPIRES_AT_MAX:
        raise InvalidInput("expires_at", f"'expires_at' must be null or Unix seconds from 1 to {EXPIRES_AT_MAX}")
    return float(value)


def validate_expires_in_days(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= EXPIRES_IN_DAYS_MAX:
        raise InvalidInput("expires_in_days", f"'expires_in_days' must be an integer from 1 to {EXPIRES_IN_DAYS_MAX}")
    return value


def validate_allowed_ips(value) -> list:
    try:
        return _allowlist(value)
    except BadAllowlist as error:
        raise InvalidInput("allowed_ips", f"'allowed_ips' {error}" if str(error).startswith("must")
                           else f"'allowed_ips': {error}") from None


_VALIDATORS = {
    "name": validate_name,
    "rate_limit": validate_rate_limit,
    "metadata": validate_metadata,
    "scopes": validate_scopes,
    "is_active": validate_is_active,
    "job_limits": validate_job_limits,
    "expires_at": validate_expires_at,
    "allowed_ips": validate_allowed_ips,
}


def parse_create(body, now: float | None = None) -> dict:
    """``now``: for ``expires_in_days`` and refusing an ``expires_at`` in the past (default: the clock)."""
    body = _require_object(body)
    _refuse_unknown(body, CREATE_FIELDS)
    if "name" not in body:
        raise InvalidInput("name", "'name' is required", "MISSING_FIELD")
    return {
        "name": validate_name(body["name"]),
        "rate_limit": validate_rate_limit(body.get("rate_limit", DEFAULT_RATE_LIMIT)),
        "metadata": validate_metadata(body.get("metadata", {})),
        "scopes": validate_scopes(body.get("scopes", list(DEFAULT_SCOPES))),
        "job_limits": validate_job_limits({} if body.get("job_limits") is None else body["job_limits"]),
        "allowed_ips": validate_allowed_ips([] if body.get("allowed_ips") is None else body["allowed_ips"]),
        **_create_expiry(body, time.time() if now is None else now),
    }


def _create_expiry(body: dict, now: float) -> dict:
    """``expires_at`` from ``expires_at`` or ``expires_in_days`` (one of them, or neither)."""
    days = body.get("expires_in_days")
    expires_at = validate_expires_at(body.get("expires_at"))
    if days is not None:
        if expires_at is not None:
            raise InvalidInput("expires_in_days", "send 'expires_at' or 'expires_in_days', not both")
        expires_at = now + validate_expires_in_days(days) * 86400.0
    elif expires_at is not None and expires_at <= now:
        raise InvalidInput("expires_at", "'expires_at' must be in the future (a new key that never works is a mistake)")
    return {"expires_at": expires_at}


def parse_update(body) -> dict:
    """Fields to change. ``null`` means unchanged, as the earlier fork had it,
    except for ``expires_at``, where null means never (clears an expiry)."""
    body = _require_object(body)
    _refuse_unknown(body, UPDATE_FIELDS)
    changes = {}
    for field_name, value in body.items():
        if value is None and field_name not in NULLABLE_UPDATE_FIELDS:
            continue
        changes[field_name] = _VALIDATORS[field_name](value)
    return changes


def parse_rotate(body) -> int:
    """``grace_seconds`` from a rotation body: how long the old secret keeps working (0: not at all)."""
    body = _require_object(body)
    _refuse_unknown(body, ROTATE_FIELDS)
    grace = body.get("grace_seconds", 0)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= GRACE_SECONDS_MAX:
        raise InvalidInput("grace_seconds", f"'grace_seconds' must be an integer from 0 to {GRACE_SECONDS_MAX}")
    return grace


def parse_days(text: str | None, default: int = 30) -> int:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 4:
        raise InvalidInput("days", f"'days' must be an integer from 1 to {DAYS_MAX}")
    days = int(text)
    if not 1 <= days <= DAYS_MAX:
        raise InvalidInput("days", f"'days' must be an integer from 1 to {DAYS_MAX}")
    return days


def validate_password(value) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("password", "'password' must be a non-empty string")
    if len(value) < PASSWORD_MIN:
        raise InvalidInput("password", f"'password' must be at least {PASSWORD_MIN} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("password", "'password' must be valid text (no lone surrogates)") from None
    if "\x00" in value:
        raise InvalidInput("password", "'password' must not contain NUL characters")
    if len(value.encode("utf-8", "surrogatepass")) > PASSWORD_MAX_BYTES:
        # bcrypt reads only 72 bytes; refusing is clearer than truncating.
        raise InvalidInput("password", f"'password' must be at most {PASSWORD_MAX_BYTES} bytes")
    return value


# ---- sign-in and password bodies ------------------------------------------------------

def parse_login(body) -> tuple[str, str]:
    """("password" or "api_key", the secret) from a sign-in body."""
    body = _require_object(body)
    _refuse_unknown(body, LOGIN_FIELDS)
    if len(body) != 1:
        raise InvalidInput(None, "send exactly one of 'password' or 'api_key'", "MISSING_FIELD")
    (field, value), = body.items()
    if not isinstance(value, str) or not value or len(value) > SECRET_MAX:
        raise InvalidInput(field, f"'{field}' must be a non-empty string", "INVALID_FIELD")
    return field, value


def parse_setup(body) -> tuple[str, str]:
    """(the setup code as typed, the new admin password) from a setup body."""
    body = _require_object(body)
    _refuse_unknown(body, SETUP_FIELDS)
    code = body.get("code")
    if not isinstance(code, str) or not code.strip() or len(code) > SETUP_CODE_MAX:
        raise InvalidInput("code", "'code' must be the setup code from the console", "INVALID_FIELD")
    if "password" not in body:
        raise InvalidInput("password", "'password' is required", "MISSING_FIELD")
    return code, validate_password(body["password"])


def parse_password_change(body) -> str:
    """The new admin password from ``{"password": "..."}``."""
    if not isinstance(body, dict) or set(body) != {"password"}:
        raise InvalidInput("password", "send exactly {\"password\": \"...\"}", "INVALID_BODY")
    return validate_password(body["password"])


def parse_end_all(body) -> bool:
    """``keep_current`` from a sign-out-everywhere body (``{}`` or ``{"keep_current": bool}``)."""
    if not isinstance(body, dict) or set(body) - {"keep_current"} or not isinstance(
            body.get("keep_current", False), bool):
        raise InvalidInput("keep_current", "send {} or {\"keep_current\": true}", "INVALID_BODY")
    return body.get("keep_current", False)
