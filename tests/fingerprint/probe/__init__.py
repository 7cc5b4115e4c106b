"""A custom node that describes the ComfyUI it is loaded into.

ComfyUI (real, or the stand-in in ``tests/comfyui_host``) imports this folder
like any custom node. It adds four routes under ``/fingerprint_probe`` and one
node, and nothing else:

* ``GET /fingerprint_probe`` answers the surface the API key package relies
  on, as JSON (see ``surface``): routes and their ``/api`` twins, static
  mounts, the ``/internal`` sub-app, the middleware list, PromptServer's and
  PromptQueue's attributes and signatures, ``args``, ``folder_paths``,
  ``execution.SENSITIVE_EXTRA_DATA_KEYS``. It is asked once the server
  listens, so every package has loaded, every route is added and the app
  is frozen: what it reports is what requests meet.
* ``FingerprintProbeShow`` is an output node. With ``hold`` on, it waits
  (at most 30 s) until ``POST /fingerprint_probe/release``, so a test can look
  at ``/queue`` while the prompt runs. What it saw from inside the worker is
  at ``GET /fingerprint_probe/seen``; the running queue item as ComfyUI keeps it
  (``GET /queue`` answers it so without a package that filters it) at
  ``GET /fingerprint_probe/running``.

tests/test_standin_contract.py drives it. The package never ships it.
"""

import inspect
import os
import sys
import threading

import folder_paths
import nodes
from aiohttp import web
from server import PromptServer

HERE = os.path.realpath(os.path.dirname(__file__))
_release = threading.Event()
_seen: dict = {}


def _core_root():
    return os.path.realpath(os.path.dirname(sys.modules["server"].__file__))


def _code_file(handler):
    function = inspect.unwrap(getattr(handler, "__func__", handler))
    code = getattr(function, "__code__", None)
    return os.path.realpath(code.co_filename) if code is not None else ""


def _owner(handler, custom_dirs):
    """Who wrote a handler: 'core' (ComfyUI), 'probe', 'aiohttp', or a custom node's folder name.
    The longest folder that holds its code wins (custom_nodes/ sits inside ComfyUI's folder)."""
    path = _code_file(handler)
    folders = {"core": _core_root(), "probe": HERE,
               "aiohttp": os.path.realpath(os.path.dirname(web.__file__)), **custom_dirs}
    best, best_length = "?", -1
    for owner, folder in folders.items():
        if path.startswith(folder + os.sep) and len(folder) > best_length:
            best, best_length = owner, len(folder)
    return best


def _custom_dirs():
    """The loaded custom nodes' folders by name. ComfyUI also lists its own comfy_extras
    and API nodes in LOADED_MODULE_DIRS (keyed by path): those count as core."""
    roots = {os.path.abspath(folder) for folder in folder_paths.get_folder_paths("custom_nodes")}
    return {name: os.path.realpath(folder) for name, folder in nodes.LOADED_MODULE_DIRS.items()
            if os.path.dirname(os.path.abspath(folder)) in roots}


def _fold_twins(pairs):
    """{(method, path)} -> {path: {"methods", "api_twin"}}; a twin is /api + a path of the same method."""
    table = {}
    for method, path in pairs:
        if path.startswith("/api/") and (method, path[4:]) in pairs:
            continue
        entry = table.setdefault(path, {"methods": [], "twin": []})
        entry["methods"].append(method)
        if (method, "/api" + path) in pairs:
            entry["twin"].append(method)
    out = {}
    for path, entry in sorted(table.items()):
        methods, twin = sorted(entry["methods"]), sorted(entry["twin"])
        out[path] = {"methods": " ".join(methods),
                     "api_twin": True if twin == methods else (" ".join(twin) if twin else False)}
    return out


def _routes(app):
    custom_dirs = _custom_dirs()
    owned: dict = {}  # owner -> {(method, path)}
    static, subapps, order = [], {}, []
    for resource in app.router.resources():
        if isinstance(resource, web.StaticResource):
            prefix = resource.canonical or "/"
            static.append(prefix)
            group = "static " + prefix
        elif isinstance(resource, web.PrefixedSubAppResource):
            prefix = resource.canonical
            # the sub-app's own resources already carry the prefix
            pairs = {(route.method, route.resource.canonical) for route in resource._app.router.routes()}
            subapps[prefix] = _fold_twins(pairs)
            group = "sub-app " + prefix
        else:
            group = None
            for route in resource:
                owner = _owner(route.handler, custom_dirs)
                owned.setdefault(owner, set()).add((route.method, resource.canonical))
                kind = "api" if resource.canonical.startswith("/api/") else "plain"
                group = f"{owner} {kind}"
        # The probe's own routes are left out: where they land depends on load order.
        if group is not None and not group.startswith("probe") and (not order or order[-1] != group):
            order.append(group)
    # Custom nodes' own routes are theirs, not ComfyUI's: only whether ComfyUI twinned them all.
    custom = {}
    for owner, pairs in owned.items():
        if owner not in ("core", "probe"):
            untwinned = sorted(path for path, entry in _fold_twins(pairs).items() if entry["api_twin"] is not True)
            custom[owner] = {"routes without an /api twin": untwinned}
    return {
        "core": _fold_twins(owned.get("core", set())),
        "custom_nodes": custom,
        "static": static,
        "sub_apps": subapps,
        "resource_order": order,
    }


def _middleware_name(middleware, custom_dirs):
    """ComfyUI's (and aiohttp's) by name; a custom node's by its folder only, as its names are its own."""
    owner = _owner(middleware, custom_dirs)
    name = getattr(middleware, "__name__", type(middleware).__name__)
    if owner == "core":
        return name
    return f"{name} (aiohttp)" if owner == "aiohttp" else f"({owner})"


def _signature(obj, name):
    member = getattr(obj, name, None)
    if member is None:
        return None
    try:
        text = str(inspect.signature(member))
    except (TypeError, ValueError):
        text = "?"
    return ("async " if inspect.iscoroutinefunction(member) else "") + text


def _type_name(obj, name):
    return type(getattr(obj, name)).__name__ if hasattr(obj, name) else None


PROMPT_SERVER_METHODS = ("send", "send_sync", "send_json", "send_bytes", "encode_bytes", "queue_updated",
                         "get_queue_info", "add_on_prompt_handler", "trigger_on_prompt", "send_progress_text",
                         "publish_loop", "add_routes", "start_multi_address")
PROMPT_SERVER_ATTRIBUTES = ("instance", "app", "routes", "loop", "messages", "sockets", "sockets_metadata",
                            "client_id", "last_node_id", "last_prompt_id", "prompt_queue", "user_manager",
                            "on_prompt_handlers", "number", "supports", "internal_routes", "web_root")
QUEUE_METHODS = ("put", "get", "task_done", "get_current_queue", "get_current_queue_volatile",
                 "get_tasks_remaining", "wipe_queue", "delete_queue_item", "get_history", "wipe_history",
                 "delete_history_item", "set_flag", "get_flags")
ARGS = ("listen", "port", "enable_cors_header", "multi_user", "tls_keyfile", "tls_certfile", "user_directory",
        "base_directory", "enable_compress_response_body", "max_upload_size", "front_end_root",
        "disable_all_custom_nodes", "whitelist_custom_nodes", "disable_metadata", "database_url", "enable_manager")
FOLDER_PATHS = ("get_user_directory", "get_system_user_directory", "get_public_user_directory",
                "SYSTEM_USER_PREFIX", "get_input_directory", "get_output_directory", "get_temp_directory",
                "get_directory_by_type", "annotated_filepath", "get_annotated_filepath",
                "exists_annotated_filepath")


def _annotated_names():
    """Which folder each spelling of a file name resolves to, as a loader sees it."""
    folders = {os.path.realpath(folder_paths.get_input_directory()): "input",
               os.path.realpath(folder_paths.get_output_directory()): "output",
               os.path.realpath(folder_paths.get_temp_directory()): "temp"}

    def where(path):
        parent = os.path.realpath(os.path.dirname(path))
        return folders.get(parent, "elsewhere")

    out = {}
    for name in ("probe.png", "probe.png [input]", "probe.png [output]", "probe.png [temp]",
                 "../probe.png [output]"):
        try:
            out[name] = where(folder_paths.get_annotated_filepath(name))
        except Exception as error:  # newer ComfyUI refuses traversal
            out[name] = "raises " + type(error).__name__
    os.makedirs(folder_paths.get_output_directory(), exist_ok=True)
    marker = os.path.join(folder_paths.get_output_directory(), "fingerprint_probe_marker.png")
    with open(marker, "wb"):
        pass
    try:
        out["exists 'marker [output]'"] = folder_paths.exists_annotated_filepath(
            "fingerprint_probe_marker.png [output]")
        load_image = nodes.NODE_CLASS_MAPPINGS.get("LoadImage")
        out["LoadImage"] = None if load_image is None else {
            "accepts 'marker [output]'": load_image.VALIDATE_INPUTS("fingerprint_probe_marker.png [output]") is True,
            "lists output files": "fingerprint_probe_marker.png" in str(load_image.INPUT_TYPES()),
        }
    finally:
        os.remove(marker)
    return out


def _folder_paths():
    present = {name: hasattr(folder_paths, name) for name in FOLDER_PATHS}
    system_dir = None
    if hasattr(folder_paths, "get_system_user_directory"):
        path = folder_paths.get_system_user_directory("api_auth")
        system_dir = os.path.relpath(path, folder_paths.get_user_directory())
    return {"present": present, "get_system_user_directory('api_auth') under user dir": system_dir,
            "annotated names": _annotated_names()}


def surface(prompt_server):
    import execution
    from comfy.cli_args import args

    app = prompt_server.app
    custom_dirs = _custom_dirs()
    queue = prompt_server.prompt_queue
    user_manager = prompt_server.user_manager
    try:
        from comfy_execution import utils as execution_utils
    except ImportError:
        execution_utils = None
    try:
        import comfyui_version
        version = comfyui_version.__version__
    except ImportError:
        version = None
    return {
        "comfyui_version": version,
        "routes": _routes(app),
        "middlewares": [_middleware_name(m, custom_dirs) for m in app.middlewares],
        # ComfyUI's and aiohttp's handlers; custom nodes' own come and go with their code
        "app_signals": {name: [label for label in (_middleware_name(h, custom_dirs) for h in getattr(app, name))
                               if not label.startswith("(")]
                        for name in ("on_startup", "on_shutdown", "on_cleanup")},
        "prompt_server": {
            "methods": {name: _signature(prompt_server, name) for name in PROMPT_SERVER_METHODS},
            "attributes": {name: _type_name(prompt_server, name) for name in PROMPT_SERVER_ATTRIBUTES},
        },
        "prompt_queue": {
            "class": f"{type(queue).__module__}.{type(queue).__name__}",
            "methods": {name: _signature(queue, name) for name in QUEUE_METHODS},
            "attributes": {name: _type_name(queue, name) for name in ("queue", "currently_running", "history")},
            "ExecutionStatus fields": list(getattr(type(queue), "ExecutionStatus", ())._fields)
            if hasattr(type(queue), "ExecutionStatus") else None,
        },
        "execution": {
            "SENSITIVE_EXTRA_DATA_KEYS": list(getattr(execution, "SENSITIVE_EXTRA_DATA_KEYS", []) or []),
            "validate_prompt": _signature(execution, "validate_prompt"),
            "get_executing_context": hasattr(execution_utils, "get_executing_context"),
        },
        "user_manager": {
            "class": type(user_manager).__name__,
            "methods": {name: _signature(user_manager, name)
                        for name in ("get_request_user_id", "get_request_user_filepath", "add_user")},
            # Asked of the command line: the API key package turns args.multi_user on itself.
            "users (single user)": getattr(user_manager, "users", None) if "--multi-user" not in sys.argv else None,
        },
        "args": {name: _type_name(args, name) for name in ARGS},
        "server_module": {name: hasattr(sys.modules["server"], name)
                          for name in ("is_loopback", "create_origin_only_middleware", "create_cors_middleware")},
        "folder_paths": _folder_paths(),
        "custom_node_loading": {
            "LOADED_MODULE_DIRS keys": sorted(custom_dirs),
            "EXTENSION_WEB_DIRS keys": sorted(nodes.EXTENSION_WEB_DIRS),
            "module registered under its path": __name__ == os.path.dirname(__file__).replace(".", "_x_"),
            "RELATIVE_PYTHON_MODULE": getattr(FingerprintProbeShow, "RELATIVE_PYTHON_MODULE", None),
        },
    }


class FingerprintProbeShow:
    """Shows its text; with ``hold``, waits for POST /fingerprint_probe/release first."""

    CATEGORY = "testing"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "show"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": ""})},
                "optional": {"hold": ("BOOLEAN", {"default": False})},
                "hidden": {"api_key": "API_KEY_COMFY_ORG", "unique_id": "UNIQUE_ID"}}

    def show(self, text, hold=False, api_key=None, unique_id=None):
        from comfy_execution.utils import get_executing_context

        context = get_executing_context()
        running = list(PromptServer.instance.prompt_queue.currently_running.values())
        _seen.update({
            "executing context": None if context is None else sorted(
                name for name in ("prompt_id", "node_id", "list_index") if hasattr(context, name)),
            "running items": len(running),
            "running item length": len(running[0]) if running else None,
            "hidden API_KEY_COMFY_ORG reaches the node": api_key is not None,
            "client_id set while running": PromptServer.instance.client_id is not None,
        })
        if hold:
            _release.wait(30)
            _release.clear()
        return {"ui": {"text": [text]}, "result": (text,)}


NODE_CLASS_MAPPINGS = {"FingerprintProbeShow": FingerprintProbeShow}
NODE_DISPLAY_NAME_MAPPINGS = {"FingerprintProbeShow": "Fingerprint probe: show"}

_routes_table = PromptServer.instance.routes


@_routes_table.get("/fingerprint_probe")
async def _surface(request):
    return web.json_response(surface(PromptServer.instance))


@_routes_table.get("/fingerprint_probe/seen")
async def _seen_route(request):
    return web.json_response(_seen)


@_routes_table.get("/fingerprint_probe/running")
async def _running_route(request):
    running, _ = PromptServer.instance.prompt_queue.get_current_queue_volatile()
    return web.json_response(running)


@_routes_table.post("/fingerprint_probe/release")
async def _release_route(request):
    _release.set()
    return web.json_response({"released": True})
