"""ComfyUI API keys: authentication, rate limits and usage for ComfyUI.

ComfyUI imports this folder (under whatever name it was cloned as); at that
moment the routes and the middleware are wired into PromptServer.instance.
"""

import logging

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

auth_runtime = None  # not "runtime": that name is the submodule

try:
    from server import PromptServer
except ImportError:  # imported outside ComfyUI (command line, unit tests)
    PromptServer = None

if PromptServer is not None and getattr(PromptServer, "instance", None) is not None:
    from .server_routes.install import install

    auth_runtime = install(PromptServer.instance)
else:
    logging.getLogger("comfyui_api_auth").debug("no PromptServer: routes not installed")

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
