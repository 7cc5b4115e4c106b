"""Where the package keeps its files: the one place that knows the layout.

The data directory is ``<ComfyUI user dir>/__api_auth`` unless
``COMFYUI_API_AUTH_DATA_DIR`` names another; it holds the SQLite database
(when no ``COMFYUI_API_AUTH_DB`` is set) and the optional ``config.json``.
No package imports here: the bench loads this file on its own.
"""

import os

DATA_DIR_NAME = "__api_auth"
DB_FILE_NAME = "auth.db"
CONFIG_FILE_NAME = "config.json"
DATA_DIR_VARIABLE = "COMFYUI_API_AUTH_DATA_DIR"


def data_dir(user_directory: str) -> str:
    """The data directory inside ComfyUI's user directory."""
    return os.path.join(user_directory, DATA_DIR_NAME)


def db_file(data_directory: str) -> str:
    """The SQLite database of a data directory."""
    return os.path.join(data_directory, DB_FILE_NAME)


def config_file(data_directory: str) -> str:
    """The settings file of a data directory."""
    return os.path.join(data_directory, CONFIG_FILE_NAME)
