"""Cache-Control middleware, modelled on ComfyUI 0.3.64's middleware/cache_middleware.py.

- *.js, *.css and index*.json entry points: "no-cache" (unless the handler set one)
- image files: 404 -> 1 hour, success / permanent redirect -> 1 day,
  temporary redirect -> "no-cache", 304 -> nothing
- everything else is left alone
"""
from typing import Awaitable, Callable

from aiohttp import web

ONE_HOUR: int = 3600
ONE_DAY: int = 86400
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_CACHEABLE = (200, 201, 202, 203, 204, 205, 206, 301, 308)
_TEMPORARY_REDIRECT = (302, 303, 307)


@web.middleware
async def cache_control(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.Response]]) -> web.Response:
    response: web.Response = await handler(request)

    last_segment = request.path.rsplit("/", 1)[-1]
    entry_point = last_segment.startswith("index") and last_segment.endswith(".json")
    if request.path.endswith((".js", ".css")) or entry_point:
        response.headers.setdefault("Cache-Control", "no-cache")
        return response

    if not request.path.lower().endswith(IMG_EXTENSIONS):
        return response

    if response.status == 404:
        response.headers.setdefault("Cache-Control", f"public, max-age={ONE_HOUR}")
    elif response.status in _CACHEABLE:
        response.headers.setdefault("Cache-Control", f"public, max-age={ONE_DAY}")
    elif response.status in _TEMPORARY_REDIRECT:
        response.headers.setdefault("Cache-Control", "no-cache")
    return response
