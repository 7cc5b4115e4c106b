"""ComfyUI API keys: authentication, rate limits and usage for ComfyUI.

ComfyUI imports this folder (under whatever name it was cloned as); at that
moment the routes and the middleware are wired into PromptServer.instance.
"""

import logging

WEB_DIRECTORY = "./web"

auth_runtime = None  # not "runtime": that name is the submodule

# Imported as a lone file, not as a package: pytest does that with the __init__.py
# of the folder it runs in when the folder's name is no module name (a clone
# named comfyui-api-auth). Relative imports cannot work then, and there is
# nothing to install; the tests load the package themselves (tests/conftest.py).
AS_PACKAGE = bool(__package__)

if AS_PACKAGE:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

try:
    from server import PromptServer
except ImportError:  # imported outside ComfyUI (command line, unit tests)
    PromptServer = None

if AS_PACKAGE and PromptServer is not None and getattr(PromptServer, "instance", None) is not None:
    from .server_routes.install import install

    auth_runtime = install(PromptServer.instance)
else:
    logging.getLogger("comfyui_api_auth").debug("no PromptServer: routes not installed")

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
