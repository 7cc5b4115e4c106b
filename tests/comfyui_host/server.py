"""PromptServer stand-in, modelled on ComfyUI 0.3.64's server.py (aiohttp only, no torch/PIL).

Same as ComfyUI:
  * PromptServer.instance is set first thing in __init__, so a custom node can
    use PromptServer.instance.routes / .app / .send_sync at import time;
  * middlewares, in order: cache_control, compress_body (only with
    --enable-compress-response-body), then create_cors_middleware(origin) if
    --enable-cors-header else create_origin_only_middleware(); anything a
    custom node appends to app.middlewares runs after those;
  * client_max_size = round(--max-upload-size MB * 1024 * 1024);
  * core routes are registered on self.routes inside __init__;
  * add_routes(): user manager routes, model manager routes (/experiment/models),
    custom-node-manager routes, the
    /internal sub-app, then an "/api" twin of every RouteDef in self.routes
    (static routes excluded), the api twins, the plain routes, one
    /extensions/<name> static folder per nodes.EXTENSION_WEB_DIRS entry,
    /templates and /docs, and finally web.static('/', web_root);
  * websocket protocol (status on connect with sid, feature_flags reply,
    send / send_sync / send_json / send_bytes, publish_loop);
  * on_prompt handlers: exceptions are logged and swallowed, the handler's
    return value replaces the request JSON.

Differences: /view serves files as-is (no PIL preview/channel conversion),
/upload/mask stores the uploaded mask as it is (ComfyUI merges its alpha into
the referenced image), /system_stats reports a fake "cpu" device, the default
web root is this folder's web/ (a tiny front end) instead of the
comfyui-frontend-package, and /templates and /docs serve small placeholder
folders here.
"""
import asyncio
import glob
import hashlib
import ipaddress
import json
import logging
import mimetypes
import os
import socket
import ssl
import struct
import sys
import time
import traceback
import urllib.parse
import uuid
from typing import Optional, Union

import aiohttp
from aiohttp import web

import execution
import folder_paths
import nodes
from api_server.routes.internal.internal_routes import InternalRoutes
from app.custom_node_manager import CustomNodeManager
from app.model_manager import ModelFileManager
from app.user_manager import UserManager
from comfy.cli_args import args
from comfyui_version import __version__
from middleware.cache_middleware import cache_control
from protocol import BinaryEventTypes

REQUIRED_FRONTEND_VERSION = "1.27.10"  # what ComfyUI 0.3.64 pins
DEFAULT_WEB_ROOT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "web")
TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "templates")
DOCS_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "docs")


def safetensors_header(path, max_size=1024 * 1024):
    """The JSON header of a .safetensors file (8-byte little-endian length, then JSON), or None."""
    try:
        with open(path, "rb") as f:
            length = struct.unpack("<Q", f.read(8))[0]
            if length > max_size:
                return None
            return json.loads(f.read(length))
    except (OSError, struct.error, ValueError):
        return None


def get_server_features():
    """ComfyUI's comfy_api.feature_flags.get_server_features()."""
    return {"supports_preview_metadata": True,
            "max_upload_size": args.max_upload_size * 1024 * 1024}


async def send_socket_catch_exception(function, message):
    try:
        await function(message)
    except (aiohttp.ClientError, aiohttp.ClientPayloadError, ConnectionResetError, BrokenPipeError,
            ConnectionError) as err:
        logging.warning("send error: {}".format(err))


@web.middleware
async def compress_body(request: web.Request, handler):
    accept_encoding = request.headers.get("Accept-Encoding", "")
    response: web.Response = await handler(request)
    if not isinstance(response, web.Response):
        return response
    if response.content_type not in ["application/json", "text/plain"]:
        return response
    if response.body and "gzip" in accept_encoding:
        response.enable_compression()
    return response


def create_cors_middleware(allowed_origin: str):
    @web.middleware
    async def cors_middleware(request: web.Request, handler):
        if request.method == "OPTIONS":
            response = web.Response()  # pre-flight: answer directly
        else:
            response = await handler(request)
        response.headers['Access-Control-Allow-Origin'] = allowed_origin
        response.headers['Access-Control-Allow-Methods'] = 'POST, GET, DELETE, PUT, OPTIONS'
        response.headers['Access-Control-Allow-Headers'] = 'Content-Type, Authorization'
        response.headers['Access-Control-Allow-Credentials'] = 'true'
        return response

    return cors_middleware


def is_loopback(host):
    """True if `host` is a loopback IP, or a name that resolves only to loopback addresses."""
    if host is None:
        return False
    try:
        return bool(ipaddress.ip_address(host).is_loopback)
    except Exception:
        pass

    loopback = False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            for _family, _, _, _, sockaddr in socket.getaddrinfo(host, None, family, socket.SOCK_STREAM):
                if not ipaddress.ip_address(sockaddr[0]).is_loopback:
                    return loopback
                loopback = True
        except socket.gaierror:
            pass
    return loopback


def create_origin_only_middleware():
    """403 for requests whose Origin host differs from the Host header when Host is loopback
    (ComfyUI's guard against other web sites posting to 127.0.0.1)."""

    @web.middleware
    async def origin_only_middleware(request: web.Request, handler):
        if 'Host' in request.headers and 'Origin' in request.headers:
            host_domain = request.headers['Host'].lower()
            parsed = urllib.parse.urlparse(request.headers['Origin'])
            origin_domain = parsed.netloc.lower()
            host_domain_parsed = urllib.parse.urlsplit('//' + host_domain)

            loopback = is_loopback(host_domain_parsed.hostname)

            # compare without ports when one side has none
            if parsed.port is None:
                host_domain = host_domain_parsed.hostname
            if host_domain_parsed.port is None:
                origin_domain = parsed.hostname

            if loopback and host_domain is not None and origin_domain is not None \
                    and len(host_domain) > 0 and len(origin_domain) > 0:
                if host_domain != origin_domain:
                    logging.warning("WARNING: request with non matching host and origin {} != {}, returning 403"
                                    .format(host_domain, origin_domain))
                    return web.Response(status=403)

        if request.method == "OPTIONS":
            return web.Response()
        return await handler(request)

    return origin_only_middleware


def _total_and_free_ram():
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = page * os.sysconf("SC_PHYS_PAGES")
        free = page * os.sysconf("SC_AVPHYS_PAGES")
        return total, free
    except (ValueError, OSError, AttributeError):
        return 0, 0


class PromptServer():
    def __init__(self, loop):
        PromptServer.instance = self

        mimetypes.init()
        mimetypes.add_type('application/javascript; charset=utf-8', '.js')
        mimetypes.add_type('image/webp', '.webp')

        self.user_manager = UserManager()
        self.model_file_manager = ModelFileManager()
        self.custom_node_manager = CustomNodeManager()
        self.internal_routes = InternalRoutes(self)
        self.supports = ["custom_nodes_from_web"]
        self.prompt_queue = execution.PromptQueue(self)
        self.loop = loop
        self.messages = asyncio.Queue()
        self.client_session: Optional[aiohttp.ClientSession] = None
        self.number = 0

        middlewares = [cache_control]
        if args.enable_compress_response_body:
            middlewares.append(compress_body)
        if args.enable_cors_header:
            middlewares.append(create_cors_middleware(args.enable_cors_header))
        else:
            middlewares.append(create_origin_only_middleware())

        max_upload_size = round(args.max_upload_size * 1024 * 1024)
        self.app = web.Application(client_max_size=max_upload_size, middlewares=middlewares)
        self.sockets = dict()
        self.sockets_metadata = dict()
        self.web_root = DEFAULT_WEB_ROOT if args.front_end_root is None else args.front_end_root
        logging.info(f"[Prompt Server] web root: {self.web_root}")
        routes = web.RouteTableDef()
        self.routes = routes
        self.last_node_id = None  # last_prompt_id appears when the worker takes a prompt, as in ComfyUI
        self.client_id = None

        self.on_prompt_handlers = []

        @routes.get('/ws')
        async def websocket_handler(request):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            sid = request.rel_url.query.get('clientId', '')
            if sid:
                self.sockets.pop(sid, None)  # reconnect: drop the old socket
            else:
                sid = uuid.uuid4().hex

            self.sockets[sid] = ws
            self.sockets_metadata[sid] = {"feature_flags": {}}

            try:
                await self.send("status", {"status": self.get_queue_info(), "sid": sid}, sid)
                if self.client_id == sid and self.last_node_id is not None:
                    await self.send("executing", {"node": self.last_node_id}, sid)

                first_message = True
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.ERROR:
                        logging.warning('ws connection closed with exception %s' % ws.exception())
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        try:
                            data = json.loads(msg.data)
                            if first_message and data.get("type") == "feature_flags":
                                self.sockets_metadata[sid]["feature_flags"] = data.get("data", {})
                                await self.send("feature_flags", get_server_features(), sid)
                            first_message = False
                        except json.JSONDecodeError:
                            logging.warning(f"Invalid JSON received from client {sid}: {msg.data}")
                        except Exception as e:
                            logging.error(f"Error processing WebSocket message: {e}")
            finally:
                self.sockets.pop(sid, None)
                self.sockets_metadata.pop(sid, None)
            return ws

        @routes.get("/")
        async def get_root(request):
            response = web.FileResponse(os.path.join(self.web_root, "index.html"))
            response.headers['Cache-Control'] = 'no-cache'
            response.headers["Pragma"] = "no-cache"
            response.headers["Expires"] = "0"
            return response

        @routes.get("/embeddings")
        def get_embeddings(request):
            embeddings = folder_paths.get_filename_list("embeddings")
            return web.json_response([os.path.splitext(a)[0] for a in embeddings])

        @routes.get("/models")
        def list_model_types(request):
            return web.json_response(list(folder_paths.folder_names_and_paths.keys()))

        @routes.get("/models/{folder}")
        async def get_models(request):
            folder = request.match_info.get("folder", None)
            if folder not in folder_paths.folder_names_and_paths:
                return web.Response(status=404)
            return web.json_response(folder_paths.get_filename_list(folder))

        @routes.get("/extensions")
        async def get_extensions(request):
            files = glob.glob(os.path.join(glob.escape(self.web_root), 'extensions/**/*.js'), recursive=True)
            extensions = ["/" + os.path.relpath(f, self.web_root).replace("\\", "/") for f in files]
            for name, dir in nodes.EXTENSION_WEB_DIRS.items():
                files = glob.glob(os.path.join(glob.escape(dir), '**/*.js'), recursive=True)
                extensions.extend("/extensions/" + urllib.parse.quote(name) + "/"
                                  + os.path.relpath(f, dir).replace("\\", "/") for f in files)
            return web.json_response(extensions)

        def get_dir_by_type(dir_type):
            if dir_type is None:
                dir_type = "input"
            if dir_type == "input":
                type_dir = folder_paths.get_input_directory()
            elif dir_type == "temp":
                type_dir = folder_paths.get_temp_directory()
            elif dir_type == "output":
                type_dir = folder_paths.get_output_directory()
            return type_dir, dir_type

        def same_content(filepath, image):
            """Uploaded file identical to the existing one? (ComfyUI hashes with sha256 by default)"""
            if not os.path.exists(filepath):
                return False
            with open(filepath, "rb") as f:
                existing = hashlib.sha256(f.read()).hexdigest()
            uploaded = hashlib.sha256(image.file.read()).hexdigest()
            image.file.seek(0)
            return existing == uploaded

        def image_upload(post, image_save_function=None):
            image = post.get("image")
            overwrite = post.get("overwrite")
            image_is_duplicate = False

            upload_dir, image_upload_type = get_dir_by_type(post.get("type"))

            if not (image and image.file):
                return web.Response(status=400)
            filename = image.filename
            if not filename:
                return web.Response(status=400)

            subfolder = post.get("subfolder", "")
            full_output_folder = os.path.join(upload_dir, os.path.normpath(subfolder))
            filepath = os.path.abspath(os.path.join(full_output_folder, filename))

            if os.path.commonpath((upload_dir, filepath)) != upload_dir:
                return web.Response(status=400)

            if not os.path.exists(full_output_folder):
                os.makedirs(full_output_folder)

            split = os.path.splitext(filename)
            if overwrite is not None and (overwrite == "true" or overwrite == "1"):
                pass
            else:
                i = 1
                while os.path.exists(filepath):
                    if same_content(filepath, image):
                        image_is_duplicate = True
                        break
                    filename = f"{split[0]} ({i}){split[1]}"
                    filepath = os.path.join(full_output_folder, filename)
                    i += 1

            if not image_is_duplicate:
                if image_save_function is not None:
                    image_save_function(image, post, filepath)
                else:
                    with open(filepath, "wb") as f:
                        f.write(image.file.read())

            return web.json_response({"name": filename, "subfolder": subfolder, "type": image_upload_type})

        @routes.post("/upload/image")
        async def upload_image(request):
            post = await request.post()
            return image_upload(post)

        @routes.post("/upload/mask")
        async def upload_mask(request):
            post = await request.post()

            def save_mask(image, post, filepath):
                """ComfyUI copies the mask's alpha into the referenced image with PIL; the
                stand-in (no PIL) stores the uploaded mask as it is, under the same checks."""
                original_ref = json.loads(post.get("original_ref"))
                filename, output_dir = folder_paths.annotated_filepath(original_ref['filename'])
                if not filename or filename[0] == '/' or '..' in filename:
                    return
                if output_dir is None:
                    output_dir = folder_paths.get_directory_by_type(original_ref.get("type", "output"))
                if output_dir is None:
                    return
                if original_ref.get("subfolder", "") != "":
                    full_output_dir = os.path.join(output_dir, original_ref["subfolder"])
                    if os.path.commonpath((os.path.abspath(full_output_dir), output_dir)) != output_dir:
                        return
                    output_dir = full_output_dir
                if os.path.isfile(os.path.join(output_dir, filename)):
                    with open(filepath, "wb") as f:
                        f.write(image.file.read())

            return image_upload(post, save_mask)

        @routes.get("/view")
        async def view_image(request):
            if "filename" in request.rel_url.query:
                filename = request.rel_url.query["filename"]
                filename, output_dir = folder_paths.annotated_filepath(filename)

                if not filename:
                    return web.Response(status=400)

                # no absolute paths, no parent directory references
                if filename[0] == '/' or '..' in filename:
                    return web.Response(status=400)

                if output_dir is None:
                    output_dir = folder_paths.get_directory_by_type(request.rel_url.query.get("type", "output"))
                if output_dir is None:
                    return web.Response(status=400)

                if "subfolder" in request.rel_url.query:
                    full_output_dir = os.path.join(output_dir, request.rel_url.query["subfolder"])
                    if os.path.commonpath((os.path.abspath(full_output_dir), output_dir)) != output_dir:
                        return web.Response(status=403)
                    output_dir = full_output_dir

                filename = os.path.basename(filename)
                file = os.path.join(output_dir, filename)

                if os.path.isfile(file):
                    content_type = mimetypes.guess_type(filename)[0] or 'application/octet-stream'
                    # never let the browser render active content from here
                    if content_type in {'text/html', 'text/html-sandboxed', 'application/xhtml+xml',
                                        'text/javascript', 'text/css'}:
                        content_type = 'application/octet-stream'
                    return web.FileResponse(file, headers={"Content-Disposition": f"filename=\"{filename}\"",
                                                           "Content-Type": content_type})

            return web.Response(status=404)

        @routes.get("/view_metadata/{folder_name}")
        async def view_metadata(request):
            folder_name = request.match_info.get("folder_name", None)
            filename = request.rel_url.query.get("filename", "")
            if folder_name is None or not filename.endswith(".safetensors"):
                return web.Response(status=404)
            safetensors_path = folder_paths.get_full_path(folder_name, filename)
            header = safetensors_header(safetensors_path) if safetensors_path else None
            if header is None or "__metadata__" not in header:
                return web.Response(status=404)
            return web.json_response(header["__metadata__"])

        @routes.get("/system_stats")
        async def system_stats(request):
            ram_total, ram_free = _total_and_free_ram()
            return web.json_response({
                "system": {
                    "os": os.name,
                    "ram_total": ram_total,
                    "ram_free": ram_free,
                    "comfyui_version": __version__,
                    "required_frontend_version": REQUIRED_FRONTEND_VERSION,
                    "installed_templates_version": None,
                    "required_templates_version": None,
                    "python_version": sys.version,
                    "pytorch_version": "none (ComfyUI stand-in)",
                    "embedded_python": os.path.split(os.path.split(sys.executable)[0])[1] == "python_embeded",
                    "argv": sys.argv,
                },
                "devices": [{
                    "name": "cpu", "type": "cpu", "index": None,
                    "vram_total": ram_total, "vram_free": ram_free,
                    "torch_vram_total": 0, "torch_vram_free": 0,
                }],
            })

        @routes.get("/features")
        async def get_features(request):
            return web.json_response(get_server_features())

        @routes.get("/prompt")
        async def get_prompt(request):
            return web.json_response(self.get_queue_info())

        def node_info(node_class):
            obj_class = nodes.NODE_CLASS_MAPPINGS[node_class]
            info = {}
            info['input'] = obj_class.INPUT_TYPES()
            info['input_order'] = {key: list(value.keys()) for (key, value) in obj_class.INPUT_TYPES().items()}
            info['output'] = obj_class.RETURN_TYPES
            info['output_is_list'] = getattr(obj_class, 'OUTPUT_IS_LIST', [False] * len(obj_class.RETURN_TYPES))
            info['output_name'] = getattr(obj_class, 'RETURN_NAMES', info['output'])
            info['name'] = node_class
            info['display_name'] = nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_class, node_class)
            info['description'] = getattr(obj_class, 'DESCRIPTION', '')
            info['python_module'] = getattr(obj_class, "RELATIVE_PYTHON_MODULE", "nodes")
            info['category'] = 'sd'
            info['output_node'] = hasattr(obj_class, 'OUTPUT_NODE') and obj_class.OUTPUT_NODE == True  # noqa: E712
            if hasattr(obj_class, 'CATEGORY'):
                info['category'] = obj_class.CATEGORY
            if hasattr(obj_class, 'OUTPUT_TOOLTIPS'):
                info['output_tooltips'] = obj_class.OUTPUT_TOOLTIPS
            if getattr(obj_class, "DEPRECATED", False):
                info['deprecated'] = True
            if getattr(obj_class, "EXPERIMENTAL", False):
                info['experimental'] = True
            if hasattr(obj_class, 'API_NODE'):
                info['api_node'] = obj_class.API_NODE
            return info

        @routes.get("/object_info")
        async def get_object_info(request):
            with folder_paths.cache_helper:
                out = {}
                for x in nodes.NODE_CLASS_MAPPINGS:
                    try:
                        out[x] = node_info(x)
                    except Exception:
                        logging.error(f"[ERROR] An error occurred while retrieving information for the '{x}' node.")
                        logging.error(traceback.format_exc())
                return web.json_response(out)

        @routes.get("/object_info/{node_class}")
        async def get_object_info_node(request):
            node_class = request.match_info.get("node_class", None)
            out = {}
            if (node_class is not None) and (node_class in nodes.NODE_CLASS_MAPPINGS):
                out[node_class] = node_info(node_class)
            return web.json_response(out)

        if args.emulate_jobs_api:
            self._add_jobs_routes(routes)

        @routes.get("/history")
        async def get_history(request):
            max_items = request.rel_url.query.get("max_items", None)
            if max_items is not None:
                max_items = int(max_items)
            offset = request.rel_url.query.get("offset", None)
            offset = int(offset) if offset is not None else -1
            return web.json_response(self.prompt_queue.get_history(max_items=max_items, offset=offset))

        @routes.get("/history/{prompt_id}")
        async def get_history_prompt_id(request):
            prompt_id = request.match_info.get("prompt_id", None)
            return web.json_response(self.prompt_queue.get_history(prompt_id=prompt_id))

        @routes.get("/queue")
        async def get_queue(request):
            running, pending = self.prompt_queue.get_current_queue_volatile()
            return web.json_response({'queue_running': running, 'queue_pending': pending})

        @routes.post("/prompt")
        async def post_prompt(request):
            logging.info("got prompt")
            json_data = await request.json()
            json_data = self.trigger_on_prompt(json_data)

            if "number" in json_data:
                number = float(json_data['number'])
            else:
                number = self.number
                if "front" in json_data:
                    if json_data['front']:
                        number = -number
                self.number += 1

            if "prompt" in json_data:
                prompt = json_data["prompt"]
                prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))

                partial_execution_targets = json_data.get("partial_execution_targets", None)

                valid = await execution.validate_prompt(prompt_id, prompt, partial_execution_targets)
                extra_data = {}
                if "extra_data" in json_data:
                    extra_data = json_data["extra_data"]
                if "client_id" in json_data:
                    extra_data["client_id"] = json_data["client_id"]
                if valid[0]:
                    outputs_to_execute = valid[2]
                    if args.emulate_jobs_api:  # newer ComfyUI stamps it (milliseconds)
                        extra_data["create_time"] = int(time.time() * 1000)
                    self.prompt_queue.put((number, prompt_id, prompt, extra_data, outputs_to_execute))
                    return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": valid[3]})
                logging.warning("invalid prompt: {}".format(valid[1]))
                return web.json_response({"error": valid[1], "node_errors": valid[3]}, status=400)

            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                     "extra_info": {}}
            return web.json_response({"error": error, "node_errors": {}}, status=400)

        @routes.post("/queue")
        async def post_queue(request):
            json_data = await request.json()
            if "clear" in json_data and json_data["clear"]:
                self.prompt_queue.wipe_queue()
            if "delete" in json_data:
                for id_to_delete in json_data['delete']:
                    self.prompt_queue.delete_queue_item(lambda a, i=id_to_delete: a[1] == i)
            return web.Response(status=200)

        @routes.post("/interrupt")
        async def post_interrupt(request):
            try:
                json_data = await request.json()
            except json.JSONDecodeError:
                json_data = {}

            prompt_id = json_data.get('prompt_id')
            if prompt_id:
                currently_running, _ = self.prompt_queue.get_current_queue()
                if any(item[1] == prompt_id for item in currently_running):
                    logging.info(f"Interrupting prompt {prompt_id}")
                    nodes.interrupt_processing()
                else:
                    logging.info(f"Prompt {prompt_id} is not currently running, skipping interrupt")
            else:
                logging.info("Global interrupt (no prompt_id specified)")
                nodes.interrupt_processing()
            return web.Response(status=200)

        @routes.post("/free")
        async def post_free(request):
            json_data = await request.json()
            unload_models = json_data.get("unload_models", False)
            free_memory = json_data.get("free_memory", False)
            if unload_models:
                self.prompt_queue.set_flag("unload_models", unload_models)
            if free_memory:
                self.prompt_queue.set_flag("free_memory", free_memory)
            return web.Response(status=200)

        @routes.post("/history")
        async def post_history(request):
            json_data = await request.json()
            if "clear" in json_data and json_data["clear"]:
                self.prompt_queue.wipe_history()
            if "delete" in json_data:
                for id_to_delete in json_data['delete']:
                    self.prompt_queue.delete_history_item(id_to_delete)
            return web.Response(status=200)

    def _add_jobs_routes(self, routes):
        """--emulate-jobs-api: newer ComfyUI's job routes (server.py at 002c3fb9). It
        registers them as "/api/jobs..." on the twinned table, so /api/api/jobs exists too.
        Newer ComfyUI keeps the Comfy.org secrets out of extra_data (a sixth item element
        it never answers); here they are dropped from the copies the routes read."""
        from comfy_execution import jobs as job_helpers

        def without_secrets(items):
            return [tuple(item[:3]) + ({k: v for k, v in item[3].items()
                                        if k not in execution.SENSITIVE_EXTRA_DATA_KEYS},) + tuple(item[4:5])
                    for item in items]

        def query_error(message):
            return web.json_response({"error": message}, status=400)

        @routes.get("/api/jobs")
        async def get_jobs(request):
            query = request.rel_url.query
            status_filter = None
            if query.get("status"):
                status_filter = [s.strip().lower() for s in query["status"].split(",") if s.strip()]
                invalid = [s for s in status_filter if s not in job_helpers.JobStatus.ALL]
                if invalid:
                    return query_error(f"Invalid status value(s): {', '.join(invalid)}. "
                                       f"Valid values: {', '.join(job_helpers.JobStatus.ALL)}")
            sort_by = query.get("sort_by", "created_at").lower()
            sort_order = query.get("sort_order", "desc").lower()
            if sort_by not in {"created_at", "execution_duration"}:
                return query_error("sort_by must be 'created_at' or 'execution_duration'")
            if sort_order not in {"asc", "desc"}:
                return query_error("sort_order must be 'asc' or 'desc'")
            limit = None
            if "limit" in query:
                try:
                    limit = int(query.get("limit"))
                except (ValueError, TypeError):
                    return query_error("limit must be an integer")
                if limit <= 0:
                    return query_error("limit must be a positive integer")
            offset = 0
            if "offset" in query:
                try:
                    offset = max(0, int(query.get("offset")))
                except (ValueError, TypeError):
                    return query_error("offset must be an integer")
            running, queued = self.prompt_queue.get_current_queue_volatile()
            history = self.prompt_queue.get_history()
            jobs, total = job_helpers.get_all_jobs(
                without_secrets(running), without_secrets(queued), history, status_filter=status_filter,
                workflow_id=query.get("workflow_id"), sort_by=sort_by, sort_order=sort_order,
                limit=limit, offset=offset)
            return web.json_response({"jobs": jobs, "pagination": {
                "offset": offset, "limit": limit, "total": total, "has_more": (offset + len(jobs)) < total}})

        @routes.get("/api/jobs/{job_id}")
        async def get_job_by_id(request):
            job_id = request.match_info.get("job_id", None)
            if not job_id:
                return query_error("job_id is required")
            running, queued = self.prompt_queue.get_current_queue_volatile()
            history = self.prompt_queue.get_history(prompt_id=job_id)
            job = job_helpers.get_job(job_id, without_secrets(running), without_secrets(queued), history)
            if job is None:
                return web.json_response({"error": "Job not found"}, status=404)
            return web.json_response(job)

        def cancel_by_id(job_id):
            running, queued = self.prompt_queue.get_current_queue()
            history = self.prompt_queue.get_history()

            def interrupt(prompt_id):  # newer PromptQueue.interrupt_if_running: atomic under the mutex
                with self.prompt_queue.mutex:
                    if any(item[1] == prompt_id for item in self.prompt_queue.currently_running.values()):
                        nodes.interrupt_processing()
                        return True
                return False

            def dequeue(prompt_id):
                return self.prompt_queue.delete_queue_item(lambda a: a[1] == prompt_id)

            outcome = job_helpers.cancel_job(job_id, running, queued, history, interrupt, dequeue)
            return outcome in (job_helpers.CANCEL_RUNNING, job_helpers.CANCEL_PENDING)

        @routes.post("/api/jobs/{job_id}/cancel")
        async def cancel_job_by_id(request):
            job_id = request.match_info.get("job_id", None)
            if not job_id:
                return query_error("job_id is required")
            return web.json_response({"cancelled": cancel_by_id(job_id)})

        @routes.post("/api/jobs/cancel")
        async def cancel_jobs_batch(request):
            try:
                json_data = await request.json()
            except json.JSONDecodeError:
                return query_error("Request body must be valid JSON")
            job_ids = json_data.get("job_ids") if isinstance(json_data, dict) else None
            if not isinstance(job_ids, list):
                return query_error("job_ids must be a list")
            invalid_ids = []
            for job_id in job_ids:
                try:
                    job_helpers.validate_job_id(job_id)
                except (ValueError, AttributeError):
                    invalid_ids.append(job_id if isinstance(job_id, str) else repr(job_id))
            if invalid_ids:
                return web.json_response({"error": "job_ids contains invalid id(s)", "invalid_ids": invalid_ids},
                                         status=400)
            cancelled = False
            for job_id in job_ids:
                if cancel_by_id(job_id):
                    cancelled = True
            return web.json_response({"cancelled": cancelled})

    async def setup(self):
        timeout = aiohttp.ClientTimeout(total=None)
        self.client_session = aiohttp.ClientSession(timeout=timeout)

    def add_routes(self):
        self.user_manager.add_routes(self.routes)
        self.model_file_manager.add_routes(self.routes)
        self.custom_node_manager.extra_dirs = [d for d in nodes.LOADED_MODULE_DIRS.values() if os.path.isdir(d)]
        self.custom_node_manager.add_routes(self.routes, self.app, nodes.LOADED_MODULE_DIRS.items())
        self.app.add_subapp('/internal', self.internal_routes.get_app())
        if args.enable_assets:  # newer ComfyUI: app.add_routes("/api/assets..."), no twin
            from app.assets.api.routes import register_assets_routes
            register_assets_routes(self.app)

        # "/api" + path twin of every route; static routes added by custom nodes are skipped
        api_routes = web.RouteTableDef()
        for route in self.routes:
            if isinstance(route, web.RouteDef):
                api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
        self.app.add_routes(api_routes)
        self.app.add_routes(self.routes)

        for name, dir in nodes.EXTENSION_WEB_DIRS.items():
            self.app.add_routes([web.static('/extensions/' + name, dir)])

        # ComfyUI mounts these when the comfyui-workflow-templates and
        # comfyui-embedded-docs packages are installed (its requirements.txt has both)
        for prefix, folder in (("/templates", TEMPLATES_DIR), ("/docs", DOCS_DIR)):
            if os.path.isdir(folder):
                self.app.add_routes([web.static(prefix, folder)])

        self.app.add_routes([web.static('/', self.web_root)])

    def get_queue_info(self):
        return {'exec_info': {'queue_remaining': self.prompt_queue.get_tasks_remaining()}}

    async def send(self, event, data, sid=None):
        if isinstance(data, (bytes, bytearray)):
            await self.send_bytes(event, data, sid)
        else:
            await self.send_json(event, data, sid)

    def encode_bytes(self, event, data):
        if not isinstance(event, int):
            raise RuntimeError(f"Binary event types must be integers, got {event}")
        message = bytearray(struct.pack(">I", event))
        message.extend(data)
        return message

    async def send_bytes(self, event, data, sid=None):
        message = self.encode_bytes(event, data)
        if sid is None:
            for ws in list(self.sockets.values()):
                await send_socket_catch_exception(ws.send_bytes, message)
        elif sid in self.sockets:
            await send_socket_catch_exception(self.sockets[sid].send_bytes, message)

    async def send_json(self, event, data, sid=None):
        message = {"type": event, "data": data}
        if sid is None:
            for ws in list(self.sockets.values()):
                await send_socket_catch_exception(ws.send_json, message)
        elif sid in self.sockets:
            await send_socket_catch_exception(self.sockets[sid].send_json, message)

    def send_sync(self, event, data, sid=None):
        """Thread-safe: queue a message for publish_loop (sid None = every client)."""
        self.loop.call_soon_threadsafe(self.messages.put_nowait, (event, data, sid))

    def queue_updated(self):
        self.send_sync("status", {"status": self.get_queue_info()})

    async def publish_loop(self):
        while True:
            msg = await self.messages.get()
            await self.send(*msg)

    async def start(self, address, port, verbose=True, call_on_start=None):
        await self.start_multi_address([(address, port)], call_on_start=call_on_start)

    async def start_multi_address(self, addresses, call_on_start=None, verbose=True):
        runner = web.AppRunner(self.app, access_log=None)
        self.runner = runner  # stand-in: kept so main.py can run the app's cleanup on SIGTERM/SIGINT
        await runner.setup()
        ssl_ctx = None
        scheme = "http"
        if args.tls_keyfile and args.tls_certfile:
            ssl_ctx = ssl.SSLContext(protocol=ssl.PROTOCOL_TLS_SERVER, verify_mode=ssl.CERT_NONE)
            ssl_ctx.load_cert_chain(certfile=args.tls_certfile, keyfile=args.tls_keyfile)
            scheme = "https"

        if verbose:
            logging.info("Starting server\n")
        for address, port in addresses:
            site = web.TCPSite(runner, address, port, ssl_context=ssl_ctx)
            await site.start()

            if not hasattr(self, 'address'):
                self.address = address
                self.port = port

            address_print = "[{}]".format(address) if ':' in address else address
            if verbose:
                logging.info("To see the GUI go to: {}://{}:{}".format(scheme, address_print, port))

        if call_on_start is not None:
            call_on_start(scheme, self.address, self.port)

    def add_on_prompt_handler(self, handler):
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data):
        for handler in self.on_prompt_handlers:
            try:
                json_data = handler(json_data)
            except Exception:
                logging.warning("[ERROR] An error occurred during the on_prompt_handler processing")
                logging.warning(traceback.format_exc())
        return json_data

    def send_progress_text(self, text: Union[bytes, bytearray, str], node_id: str, sid=None):
        if isinstance(text, str):
            text = text.encode("utf-8")
        node_id_bytes = str(node_id).encode("utf-8")
        message = struct.pack(">I", len(node_id_bytes)) + node_id_bytes + text
        self.send_sync(BinaryEventTypes.TEXT, message, sid)
