"""/settings routes, modelled on ComfyUI's app/app_settings.py.

Settings live in <user directory>/<user>/comfy.settings.json ("default" user
unless --multi-user and a Comfy-User header name another known user).
"""
import json
import logging
import os

from aiohttp import web

SETTINGS_FILE = "comfy.settings.json"


class AppSettings():
    def __init__(self, user_manager):
        self.user_manager = user_manager

    def get_settings(self, request):
        try:
            file = self.user_manager.get_request_user_filepath(request, SETTINGS_FILE)
        except KeyError as e:
            logging.error("User settings not found.")
            raise web.HTTPUnauthorized() from e
        if not os.path.isfile(file):
            return {}
        try:
            with open(file) as f:
                return json.load(f)
        except Exception:
            logging.error(f"The user settings file is corrupted: {file}")
            return {}

    def save_settings(self, request, settings):
        file = self.user_manager.get_request_user_filepath(request, SETTINGS_FILE)
        with open(file, "w") as f:
            f.write(json.dumps(settings, indent=4))

    def add_routes(self, routes):
        @routes.get("/settings")
        async def get_settings(request):
            return web.json_response(self.get_settings(request))

        @routes.get("/settings/{id}")
        async def get_setting(request):
            settings = self.get_settings(request)
            setting_id = request.match_info.get("id", None)
            value = settings[setting_id] if setting_id and setting_id in settings else None
            return web.json_response(value)

        @routes.post("/settings")
        async def post_settings(request):
            settings = self.get_settings(request)
            new_settings = await request.json()
            self.save_settings(request, {**settings, **new_settings})
            return web.Response(status=200)

        @routes.post("/settings/{id}")
        async def post_setting(request):
            setting_id = request.match_info.get("id", None)
            if not setting_id:
                return web.Response(status=400)
            settings = self.get_settings(request)
            settings[setting_id] = await request.json()
            self.save_settings(request, settings)
            return web.Response(status=200)
