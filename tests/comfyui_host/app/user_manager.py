"""User data routes, modelled on ComfyUI 0.3.64's app/user_manager.py.

Routes: GET/POST /users, GET /userdata, GET /v2/userdata,
GET/POST/DELETE /userdata/{file}, POST /userdata/{file}/move/{dest},
plus the /settings routes from app_settings.

Files live under <user directory>/<user id>/. Without --multi-user the user
is always "default"; with it, the Comfy-User header picks the user and
unknown users make the request fail (KeyError -> HTTP 500 as in ComfyUI,
or 401 for settings).
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import uuid
from typing import TypedDict
from urllib import parse

from aiohttp import web

import folder_paths
from comfy.cli_args import args

from .app_settings import AppSettings

default_user = "default"


class FileInfo(TypedDict):
    path: str
    size: int
    modified: int
    created: int


def get_file_info(path: str, relative_to: str) -> FileInfo:
    return {
        "path": os.path.relpath(path, relative_to).replace(os.sep, '/'),
        "size": os.path.getsize(path),
        "modified": os.path.getmtime(path),
        "created": os.path.getctime(path),
    }


class UserManager():
    def __init__(self):
        user_directory = folder_paths.get_user_directory()
        self.settings = AppSettings(self)
        if not os.path.exists(user_directory):
            os.makedirs(user_directory, exist_ok=True)
            if not args.multi_user:
                logging.warning("****** User settings have been changed to be stored on the server instead of browser storage. ******")
                logging.warning("****** For multi-user setups add the --multi-user CLI argument to enable multiple user profiles. ******")

        if args.multi_user:
            if os.path.isfile(self.get_users_file()):
                with open(self.get_users_file()) as f:
                    self.users = json.load(f)
            else:
                self.users = {}
        else:
            self.users = {"default": "default"}

    def get_users_file(self):
        return os.path.join(folder_paths.get_user_directory(), "users.json")

    def get_request_user_id(self, request):
        user = "default"
        if args.multi_user and "comfy-user" in request.headers:
            user = request.headers["comfy-user"]
            # --emulate-system-users: newer ComfyUI refuses system users with the same message
            prefix = getattr(folder_paths, "SYSTEM_USER_PREFIX", None)
            if prefix and user.startswith(prefix):
                raise KeyError("Unknown user: " + user)
        if user not in self.users:
            raise KeyError("Unknown user: " + user)
        return user

    def get_request_user_filepath(self, request, file, type="userdata", create_dir=True):
        """Absolute path of `file` in the requesting user's folder, or None if it would escape it."""
        if type != "userdata":
            raise KeyError("Unknown filepath type:" + type)
        root_dir = folder_paths.get_user_directory()

        user = self.get_request_user_id(request)
        user_root = os.path.abspath(os.path.join(root_dir, user))
        if os.path.commonpath((root_dir, user_root)) != root_dir:
            return None

        path = user_root
        if file is not None:
            if "%" in file:  # the front end URL-encodes nested paths (a%2Fb.json)
                file = parse.unquote(file)
            path = os.path.abspath(os.path.join(user_root, file))
            if os.path.commonpath((user_root, path)) != user_root:
                return None

        parent = os.path.split(path)[0]
        if create_dir and not os.path.exists(parent):
            os.makedirs(parent, exist_ok=True)
        return path

    def add_user(self, name):
        name = name.strip()
        if not name:
            raise ValueError("username not provided")
        user_id = re.sub("[^a-zA-Z0-9-_]+", '-', name)
        prefix = getattr(folder_paths, "SYSTEM_USER_PREFIX", None)  # --emulate-system-users
        if prefix and (name.startswith(prefix) or user_id.startswith(prefix)):
            raise ValueError("System User prefix not allowed")
        user_id = user_id + "_" + str(uuid.uuid4())
        self.users[user_id] = name
        with open(self.get_users_file(), "w") as f:
            json.dump(self.users, f)
        return user_id

    def add_routes(self, routes):
        self.settings.add_routes(routes)

        @routes.get("/users")
        async def get_users(request):
            if args.multi_user:
                return web.json_response({"storage": "server", "users": self.users})
            user_dir = self.get_request_user_filepath(request, None, create_dir=False)
            return web.json_response({"storage": "server", "migrated": os.path.exists(user_dir)})

        @routes.post("/users")
        async def post_users(request):
            body = await request.json()
            username = body["username"]
            if username in self.users.values():
                return web.json_response({"error": "Duplicate username."}, status=400)
            if not hasattr(folder_paths, "SYSTEM_USER_PREFIX"):  # 0.3.64: a ValueError is a 500
                return web.json_response(self.add_user(username))
            try:  # newer ComfyUI (--emulate-system-users)
                return web.json_response(self.add_user(username))
            except ValueError as e:
                return web.json_response({"error": str(e)}, status=400)

        @routes.get("/userdata")
        async def listuserdata(request):
            """?dir=<folder>[&recurse=true][&full_info=true][&split=true]"""
            directory = request.rel_url.query.get('dir', '')
            if not directory:
                return web.Response(status=400, text="Directory not provided")
            path = self.get_request_user_filepath(request, directory)
            if not path:
                return web.Response(status=403, text="Invalid directory")
            if not os.path.exists(path):
                return web.Response(status=404, text="Directory not found")

            recurse = request.rel_url.query.get('recurse', '').lower() == "true"
            full_info = request.rel_url.query.get('full_info', '').lower() == "true"
            split_path = request.rel_url.query.get('split', '').lower() == "true"

            pattern = os.path.join(glob.escape(path), '**', '*') if recurse else os.path.join(glob.escape(path), '*')

            def describe(full_path):
                if full_info:
                    return get_file_info(full_path, path)
                rel_path = os.path.relpath(full_path, path).replace(os.sep, '/')
                if split_path:
                    return [rel_path] + rel_path.split('/')
                return rel_path

            return web.json_response([describe(p) for p in glob.glob(pattern, recursive=recurse) if os.path.isfile(p)])

        @routes.get("/v2/userdata")
        async def list_userdata_v2(request):
            requested = parse.unquote(request.rel_url.query.get('path', ''))
            try:
                base_user_path = self.get_request_user_filepath(request, None, create_dir=False)
                target = (self.get_request_user_filepath(request, requested, create_dir=False)
                          if requested else base_user_path)
            except KeyError as e:
                logging.warning(f"Access denied for user: {e}")
                return web.Response(status=403, text="Invalid user specified in request")
            if not target:
                return web.Response(status=400, text="Invalid path requested")
            if not os.path.exists(target):
                if target == base_user_path:
                    return web.json_response([])
                return web.Response(status=404, text="Requested path not found")
            if not os.path.isdir(target):
                return web.Response(status=400, text="Requested path is not a directory")

            results = []
            for root, dirs, files in os.walk(target, topdown=True):
                for dir_name in dirs:
                    rel = os.path.relpath(os.path.join(root, dir_name), base_user_path).replace(os.sep, '/')
                    results.append({"name": dir_name, "path": rel, "type": "directory"})
                for file_name in files:
                    file_path = os.path.join(root, file_name)
                    rel = os.path.relpath(file_path, base_user_path).replace(os.sep, '/')
                    entry = {"name": file_name, "path": rel, "type": "file"}
                    try:
                        st = os.stat(file_path)
                        entry["size"] = st.st_size
                        entry["modified"] = st.st_mtime
                    except OSError:
                        pass
                    results.append(entry)
            results.sort(key=lambda x: (x['type'] != 'directory', x['name'].lower()))
            return web.json_response(results)

        def user_data_path(request, check_exists=False, param="file"):
            file = request.match_info.get(param, None)
            if not file:
                return web.Response(status=400)
            path = self.get_request_user_filepath(request, file)
            if not path:
                return web.Response(status=403)
            if check_exists and not os.path.exists(path):
                return web.Response(status=404)
            return path

        @routes.get("/userdata/{file}")
        async def getuserdata(request):
            path = user_data_path(request, check_exists=True)
            if not isinstance(path, str):
                return path
            return web.FileResponse(path)

        @routes.post("/userdata/{file}")
        async def post_userdata(request):
            """Body = raw file content. ?overwrite=false -> 409 if it exists; ?full_info=true."""
            path = user_data_path(request)
            if not isinstance(path, str):
                return path
            overwrite = request.query.get("overwrite", 'true') != "false"
            full_info = request.query.get('full_info', 'false').lower() == "true"
            if not overwrite and os.path.exists(path):
                return web.Response(status=409, text="File already exists")
            try:
                body = await request.read()
                with open(path, "wb") as f:
                    f.write(body)
            except OSError as e:
                logging.warning(f"Error saving file '{path}': {e}")
                return web.Response(status=400,
                                    reason="Invalid filename. Please avoid special characters like :\\/*?\"<>|")
            user_path = self.get_request_user_filepath(request, None)
            return web.json_response(get_file_info(path, user_path) if full_info else os.path.relpath(path, user_path))

        @routes.delete("/userdata/{file}")
        async def delete_userdata(request):
            path = user_data_path(request, check_exists=True)
            if not isinstance(path, str):
                return path
            os.remove(path)
            return web.Response(status=204)

        @routes.post("/userdata/{file}/move/{dest}")
        async def move_userdata(request):
            source = user_data_path(request, check_exists=True)
            if not isinstance(source, str):
                return source
            dest = user_data_path(request, check_exists=False, param="dest")
            if not isinstance(dest, str):
                return dest
            overwrite = request.query.get("overwrite", 'true') != "false"
            full_info = request.query.get('full_info', 'false').lower() == "true"
            if not overwrite and os.path.exists(dest):
                return web.Response(status=409, text="File already exists")
            logging.info(f"moving '{source}' -> '{dest}'")
            shutil.move(source, dest)
            user_path = self.get_request_user_filepath(request, None)
            return web.json_response(get_file_info(dest, user_path) if full_info else os.path.relpath(dest, user_path))
