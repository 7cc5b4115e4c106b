"""The /internal sub-application, modelled on ComfyUI 0.3.64's internal_routes.py.

GET /internal/logs, GET /internal/logs/raw, PATCH /internal/logs/subscribe,
GET /internal/folder_paths, GET /internal/files/{output|input|temp}.
Being a sub-app, these routes get no /api twin (same as ComfyUI).
"""
import os
from typing import Optional

from aiohttp import web

import app.logger
from api_server.services.terminal_service import TerminalService
from folder_paths import folder_names_and_paths, get_directory_by_type


class InternalRoutes:
    def __init__(self, prompt_server):
        self.routes: web.RouteTableDef = web.RouteTableDef()
        self._app: Optional[web.Application] = None
        self.prompt_server = prompt_server
        self.terminal_service = TerminalService(prompt_server)

    def setup_routes(self):
        @self.routes.get('/logs')
        async def get_logs(request):
            entries = app.logger.get_logs() or []
            return web.json_response("".join(e["t"] + " - " + e["m"] for e in entries))

        @self.routes.get('/logs/raw')
        async def get_raw_logs(request):
            self.terminal_service.update_size()
            return web.json_response({
                "entries": list(app.logger.get_logs() or []),
                "size": {"cols": self.terminal_service.cols, "rows": self.terminal_service.rows},
            })

        @self.routes.patch('/logs/subscribe')
        async def subscribe_logs(request):
            json_data = await request.json()
            client_id = json_data["clientId"]
            if json_data["enabled"]:
                self.terminal_service.subscribe(client_id)
            else:
                self.terminal_service.unsubscribe(client_id)
            return web.Response(status=200)

        @self.routes.get('/folder_paths')
        async def get_folder_paths(request):
            return web.json_response({key: value[0] for key, value in folder_names_and_paths.items()})

        @self.routes.get('/files/{directory_type}')
        async def get_files(request: web.Request) -> web.Response:
            directory_type = request.match_info['directory_type']
            if directory_type not in ("output", "input", "temp"):
                return web.json_response({"error": "Invalid directory type"}, status=400)
            directory = get_directory_by_type(directory_type)
            files = sorted((entry for entry in os.scandir(directory) if entry.is_file()),
                           key=lambda entry: -entry.stat().st_mtime)
            return web.json_response([entry.name for entry in files], status=200)

    def get_app(self):
        if self._app is None:
            self._app = web.Application()
            self.setup_routes()
            self._app.add_routes(self.routes)
        return self._app
