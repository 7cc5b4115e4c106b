"""Wire the package into ComfyUI's ``PromptServer``.

Routes go on ``PromptServer.instance.routes`` at import time, so ComfyUI's
``add_routes`` gives each its ``/api`` twin. The middleware goes in at index
0 (outermost) now, and is moved back to index 0 in ``on_startup``, after
every other package has loaded and may have inserted its own.
"""

import asyncio
import logging
import os
import re
import sys

from aiohttp import web

from ..core.client_ids import ClientIdOwners
from ..core.proxies import is_loopback
from ..runtime import AuthRuntime, default_data_dir
from .access_api import AccessApi
from .auth_api import AuthApi
from .client_ids import ClientIds, route_prompt_messages
from .comfy_users import ComfyUsers
from .exit_signals import flush_on_exit_signals
from .folder_names import FolderNames
from .keys_api import KeysApi
from .middleware import create_middleware
from .node_rules import NodeRulesHook
from .own_work import OwnWork
from .own_files import OwnFiles, record_executed
from .prompt_gate import PromptGate
from .route_survey import unclassified_routes
from .sockets import OpenSockets

log = logging.getLogger("comfyui_api_auth")

# The runtime installed into ComfyUI, on its app (the nodes find it there).
RUNTIME_KEY = web.AppKey("comfyui_api_auth_runtime", AuthRuntime)


def listen_addresses():
    """ComfyUI's ``--listen`` addresses (comma-separated; default loopback)."""
    try:
        from comfy.cli_args import args
    except ImportError:
        return ["127.0.0.1"]
    return [part.strip() for part in (getattr(args, "listen", None) or "127.0.0.1").split(",") if part.strip()]


def listen_port() -> int:
    try:
        from comfy.cli_args import args
    except ImportError:
        return 8188
    return getattr(args, "port", None) or 8188


LOCAL_TRUST_TEXT = {"on": "admin", "bootstrap": "allowed to manage non-admin keys until an admin exists",
                    "off": "not trusted"}


def _to_terminal(line: str):
    """Write to the process's real stderr, not through logging or sys.stderr:
    ComfyUI captures both and serves them at /internal/logs (and to /ws
    subscribers), which anyone may read in enable mode."""
    stream = sys.__stderr__
    if stream is None:
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def announce_setup_code(runtime, addresses):
    """While no admin exists, print a one-time code that sets the admin password
    (as Jupyter prints its token): whoever reads this terminal owns the server."""
    code = runtime.sign_in.new_setup_code()
    if code is None:
        return
    host = addresses[0] if addresses else "127.0.0.1"
    if host in ("0.0.0.0", "::", "") or host.startswith("0.0.0.0"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    folder = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _to_terminal(f"[api-auth] no admin yet: open http://{host}:{listen_port()}/login and enter setup code {code}, "
                 f"or run: python custom_nodes/{folder} set-password")


KEY_PATTERN = re.compile(r"comfy_[0-9A-Za-z]{20,}")


class _RedactKeys(logging.Filter):
    """aiohttp logs the raw header line its parser refused; take any API key out of it."""

    def filter(self, record):
        pattern = KEY_PATTERN
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = pattern.sub("comfy_[redacted]", record.exc_text)
        message = record.getMessage()
        if "comfy_" in message:
            record.msg, record.args = pattern.sub("comfy_[redacted]", message), ()
        return True


def note_unclassified_routes(app, runtime):
    """Find the routes nobody classified and say so once in the log."""
    runtime.unclassified_routes = unclassified_routes(app, runtime.policy)
    if runtime.unclassified_routes and runtime.settings.enabled:
        listed = ", ".join(f"{' '.join(entry['methods'])} {entry['path']}" for entry in runtime.unclassified_routes)
        log.warning("[api-auth] %d route(s) of other custom nodes are not classified, so a key needs the "
                    "admin scope there: %s. To open one to keys, set COMFYUI_API_AUTH_ROUTE_SCOPES, "
                    "e.g. {\"/my_node/\": \"generate\"} (README: Scopes).", len(runtime.unclassified_routes), listed)


def install(prompt_server, data_dir: str | None = None) -> AuthRuntime:
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access"):
        logging.getLogger(name).addFilter(_RedactKeys())
    runtime = AuthRuntime(data_dir or default_data_dir())
    runtime.load_settings()
    if runtime.problem is None and not runtime.settings.enabled:
        log.info("[api-auth] COMFYUI_API_AUTH=off: the API key package is loaded and does nothing")
        return runtime
    gate = PromptGate(runtime)
    sockets = OpenSockets(runtime.keys, runtime.clock, lambda: getattr(prompt_server, "sockets", None) or {},
                          lambda: runtime.trusted_proxies)
    runtime.keys.access_changed = sockets.sweep
    # Turns ComfyUI's multi-user mode on: each key gets its own ComfyUI user.
    users = ComfyUsers.install(prompt_server)
    # Outermost first: a prompt naming someone else's client id or file, or a
    # node its scope may not run, is refused before the gate counts it.
    client_ids = ClientIds(ClientIdOwners(), runtime.clock)
    own_files = OwnFiles(runtime)
    own_work = OwnWork(runtime, prompt_server)
    middleware = create_middleware(runtime, hooks=(client_ids, own_files, NodeRulesHook(runtime), gate, sockets,
                                                   own_work, users, FolderNames()))
    app = prompt_server.app
    # The middleware goes in before any route exists, so a failure below can
    # leave the server closed (503) but never with open key routes.
    app.middlewares.insert(0, middleware)
    try:
        _wire(prompt_server, runtime, gate, middleware)
        route_prompt_messages(prompt_server, client_ids.owners.owners, runtime.jobs.owner)
    except Exception as error:
        runtime.fail(f"installing the package failed: {type(error).__name__}: {error}")
        raise
    return runtime


def _wire(prompt_server, runtime, gate, middleware):
    prompt_server.app[RUNTIME_KEY] = runtime
    KeysApi(runtime).register(prompt_server.routes)
    AuthApi(runtime).register(prompt_server.routes)
    AccessApi(runtime).register(prompt_server.routes)
    prompt_server.add_on_prompt_handler(gate.on_prompt)
    record_executed(runtime, prompt_server)
    runtime.job_watch.prompt_queue = lambda: getattr(prompt_server, "prompt_queue", None)
    app = prompt_server.app

    async def on_startup(app):
        if middleware in app.middlewares:
            app.middlewares.remove(middleware)
        app.middlewares.insert(0, middleware)
        addresses = listen_addresses()
        loopback_only = all(is_loopback(address) for address in addresses)
        runtime.local_trust = runtime.settings.trust_localhost if loopback_only else "off"
        runtime.trusted_local_possible = runtime.local_trust != "off"
        await runtime.start()
        note_unclassified_routes(app, runtime)
        if runtime.ready:
            # ComfyUI skips on_shutdown on SIGTERM and Ctrl-C: give unspent quota back there too.
            flush_on_exit_signals(asyncio.get_running_loop(), runtime.flush_sync)
            log.info("[api-auth] mode %s; %d keys; local requests are %s", runtime.settings.mode,
                     len(runtime.keys.by_pk), LOCAL_TRUST_TEXT[runtime.local_trust])
            announce_setup_code(runtime, addresses)

    async def on_shutdown(app):
        await runtime.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
