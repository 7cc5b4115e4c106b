"""JSON answers and request-body reading shared by the routes."""

import json

from aiohttp import web
from multidict import istr

from ..core.validation import InvalidInput

JSON_TYPES = ("application/json",)
# Case-folded once, as aiohttp's own header names are, so setting them is cheap.
LIMIT_HEADER = istr("X-RateLimit-Limit")
REMAINING_HEADER = istr("X-RateLimit-Remaining")
RESET_HEADER = istr("X-RateLimit-Reset")
RETRY_AFTER_HEADER = istr("Retry-After")


def error(status: int, code: str, message: str, headers=None, **extra) -> web.Response:
    body = {"error": message, "error_code": code}
    body.update(extra)
    return web.json_response(body, status=status, headers=headers)


def rate_limit_headers(limit: int, remaining: int, reset_at: int, retry_after: int | None = None) -> dict:
    """The X-RateLimit-* headers of an answer (and Retry-After on a refusal):
    the hour's limit, what is left of it, and when it starts afresh (epoch s)."""
    headers = {LIMIT_HEADER: str(limit), REMAINING_HEADER: str(remaining), RESET_HEADER: str(reset_at)}
    if retry_after is not None:
        headers[RETRY_AFTER_HEADER] = str(retry_after)
    return headers


def invalid(exc: InvalidInput) -> web.Response:
    extra = {"field": exc.field} if exc.field else {}
    return error(400, exc.code, str(exc), **extra)


class BodyError(Exception):
    def __init__(self, response: web.Response):
        super().__init__(response.status)
        self.response = response


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise InvalidInput(key, f"field '{key}' appears twice", "DUPLICATE_FIELD")
        seen[key] = value
    return seen


def _no_constants(name):
    raise InvalidInput(None, f"'{name}' is not valid JSON", "INVALID_JSON")


async def read_json(request: web.Request, limit: int):
    """The JSON body, or BodyError carrying the 4xx answer. Bounded in size."""
    content_type = request.headers.get("Content-Type", "")
    media_type, _, parameters = content_type.partition(";")
    charset = "utf-8"
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media_type.strip().lower() not in JSON_TYPES or charset not in ("utf-8", "utf8"):
        raise BodyError(error(415, "UNSUPPORTED_MEDIA_TYPE",
                              "send the body as JSON with 'Content-Type: application/json'"))
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(error(413, "BODY_TOO_LARGE", f"request body must be at most {limit} bytes"))
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyError(error(413, "BODY_TOO_LARGE", f"request body must be at most {limit} bytes"))
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except InvalidInput as exc:
        raise BodyError(invalid(exc)) from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BodyError(error(400, "INVALID_JSON", "request body is not valid JSON")) from None
