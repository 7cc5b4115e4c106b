"""``GET /internal/folder_paths`` for key holders: the folder names, not the paths.

Both ComfyUI frontends ask for it when a loaded workflow names a model that
is missing (frontend 1.58.1's default template does, so a new key holder's
first page load does), and show "Invalid directory specified" when refused.
The answer maps each model folder name to the server's absolute paths: the
names are the catalog (``/models`` lists them too), the paths are the
operator's. So a key gets every name with an empty list of paths; admins
and the anonymous caller of ``enable`` mode get ComfyUI's answer.
"""

import json

from aiohttp import web

FOLDER_PATHS = "/internal/folder_paths"


class FolderNames:
    """A route hook (see route_hooks) on ``GET /internal/folder_paths``."""

    def wrapper(self, path, method):
        return self.run if path == FOLDER_PATHS and method in ("GET", "HEAD") else None

    async def run(self, request, handler, principal, now):
        response = await handler(request)
        if principal.is_admin or principal.key is None or response.status != 200:
            return response
        try:
            names = json.loads(response.body)
        except (TypeError, ValueError):
            return web.json_response({})
        return web.json_response({name: [] for name in names} if isinstance(names, dict) else {})
