"""``python <this folder> …``: the command line, without ComfyUI running.

The folder is a package with relative imports, so it is loaded here under a
fixed name, the way ComfyUI loads custom nodes, and its ``cli`` is run.
"""

import importlib
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "comfyui_api_auth"

if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
    sys.path.pop(0)  # the folder itself is not a place to import from
if PACKAGE not in sys.modules:
    spec = importlib.util.spec_from_file_location(PACKAGE, os.path.join(HERE, "__init__.py"),
                                                  submodule_search_locations=[HERE])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
sys.exit(importlib.import_module(PACKAGE + ".cli").main())
