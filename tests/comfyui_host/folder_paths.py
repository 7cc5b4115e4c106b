"""Stand-in for ComfyUI 0.3.64's folder_paths module.

Same module-level state and function names a custom node may use:
base_path, models_dir, folder_names_and_paths, the input/output/temp/user
directory getters and setters, get_directory_by_type, annotated file paths,
get_folder_paths / add_model_folder_path / get_filename_list / get_full_path,
get_save_image_path, filter_files_content_types, get_input_subfolders.

As in 0.3.64 there is no get_system_user_directory(). With the stand-in's
--emulate-system-users flag the module has what newer ComfyUI added (PR
#10966): SYSTEM_USER_PREFIX ("__"), get_system_user_directory(name) ->
<user dir>/__<name> (name: letters, digits and "_", not starting with "_";
the folder is not created) and get_public_user_directory(user_id) (None for
a system user).

base_path is --base-directory if given, else the folder holding this file
(ComfyUI uses the folder holding its own folder_paths.py). Importing the
module creates the input directory, like ComfyUI does.
"""
from __future__ import annotations

import logging
import mimetypes
import os
import time
from collections.abc import Collection
from typing import List, Literal

from comfy.cli_args import args

supported_pt_extensions: set[str] = {'.ckpt', '.pt', '.pt2', '.bin', '.pth', '.safetensors', '.pkl', '.sft'}

# folder name -> ([paths], {extensions})
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}

if args.base_directory:
    base_path = os.path.abspath(args.base_directory)
else:
    base_path = os.path.dirname(os.path.realpath(__file__))

models_dir = os.path.join(base_path, "models")


def _model_folder(name, subfolders=None, extensions=None):
    subfolders = subfolders or [name]
    folder_names_and_paths[name] = ([os.path.join(models_dir, s) for s in subfolders],
                                    supported_pt_extensions if extensions is None else extensions)


_model_folder("checkpoints")
_model_folder("configs", extensions=[".yaml"])
_model_folder("loras")
_model_folder("vae")
_model_folder("text_encoders", ["text_encoders", "clip"])
_model_folder("diffusion_models", ["unet", "diffusion_models"])
_model_folder("clip_vision")
_model_folder("style_models")
_model_folder("embeddings")
_model_folder("diffusers", extensions=["folder"])
_model_folder("vae_approx")
_model_folder("controlnet", ["controlnet", "t2i_adapter"])
_model_folder("gligen")
_model_folder("upscale_models")
folder_names_and_paths["custom_nodes"] = ([os.path.join(base_path, "custom_nodes")], set())
_model_folder("hypernetworks")
_model_folder("photomaker")
_model_folder("classifiers", extensions={""})
_model_folder("model_patches")
_model_folder("audio_encoders")

output_directory = os.path.join(base_path, "output")
temp_directory = os.path.join(base_path, "temp")
input_directory = os.path.join(base_path, "input")
user_directory = os.path.join(base_path, "user")

filename_list_cache: dict[str, tuple[list[str], dict[str, float], float]] = {}


class CacheHelper:
    """While active (used as a context manager), remembers file listings."""

    def __init__(self):
        self.cache: dict[str, tuple[list[str], dict[str, float], float]] = {}
        self.active = False

    def get(self, key, default=None):
        return self.cache.get(key, default) if self.active else default

    def set(self, key, value):
        if self.active:
            self.cache[key] = value

    def clear(self):
        self.cache.clear()

    def __enter__(self):
        self.active = True
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.active = False
        self.clear()


cache_helper = CacheHelper()

extension_mimetypes_cache = {"webp": "image", "fbx": "model"}


def map_legacy(folder_name: str) -> str:
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


if not os.path.exists(input_directory):
    try:
        os.makedirs(input_directory)
    except Exception:
        logging.error("Failed to create input directory")


def set_output_directory(output_dir: str) -> None:
    global output_directory
    output_directory = output_dir


def set_temp_directory(temp_dir: str) -> None:
    global temp_directory
    temp_directory = temp_dir


def set_input_directory(input_dir: str) -> None:
    global input_directory
    input_directory = input_dir


def set_user_directory(user_dir: str) -> None:
    global user_directory
    user_directory = user_dir


def get_output_directory() -> str:
    return output_directory


def get_temp_directory() -> str:
    return temp_directory


def get_input_directory() -> str:
    return input_directory


def get_user_directory() -> str:
    return user_directory


def get_directory_by_type(type_name: str) -> str | None:
    """Only the three folders the HTTP server may expose."""
    if type_name == "output":
        return get_output_directory()
    if type_name == "temp":
        return get_temp_directory()
    if type_name == "input":
        return get_input_directory()
    return None


def filter_files_content_types(files: list[str], content_types: List[Literal["image", "video", "audio", "model"]]) -> list[str]:
    result = []
    for file in files:
        extension = file.split('.')[-1]
        content_type = extension_mimetypes_cache.get(extension)
        if content_type is None:
            mime_type, _ = mimetypes.guess_type(file, strict=False)
            if not mime_type:
                continue
            content_type = mime_type.split('/')[0]
            extension_mimetypes_cache[extension] = content_type
        if content_type in content_types:
            result.append(file)
    return result


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """'file.png [output]' -> ('file.png', output dir); no annotation -> (name, None)."""
    for suffix, getter in ((" [output]", get_output_directory),
                           (" [input]", get_input_directory),
                           (" [temp]", get_temp_directory)):
        if name.endswith(suffix.strip()):
            return name[:-len(suffix)], getter()
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = default_dir if default_dir is not None else get_input_directory()
    return os.path.join(base_dir, name)


def exists_annotated_filepath(name) -> bool:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = get_input_directory()
    return os.path.exists(os.path.join(base_dir, name))


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())
        return
    paths = folder_names_and_paths[folder_name][0]
    if full_folder_path in paths:
        if is_default and paths[0] != full_folder_path:
            paths.remove(full_folder_path)
            paths.insert(0, full_folder_path)
    elif is_default:
        paths.insert(0, full_folder_path)
    else:
        paths.append(full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[map_legacy(folder_name)][0])


def recursive_search(directory: str, excluded_dir_names: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    if not os.path.isdir(directory):
        return [], {}
    excluded = set(excluded_dir_names or [])
    files: list[str] = []
    dirs: dict[str, float] = {}
    try:
        dirs[directory] = os.path.getmtime(directory)
    except FileNotFoundError:
        logging.warning(f"Warning: Unable to access {directory}. Skipping this path.")
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        subdirs[:] = [d for d in subdirs if d not in excluded]
        for file_name in filenames:
            files.append(os.path.relpath(os.path.join(dirpath, file_name), directory))
        for d in subdirs:
            path = os.path.join(dirpath, d)
            try:
                dirs[path] = os.path.getmtime(path)
            except FileNotFoundError:
                logging.warning(f"Warning: Unable to access {path}. Skipping this path.")
    return files, dirs


def filter_files_extensions(files: Collection[str], extensions: Collection[str]) -> list[str]:
    return sorted(f for f in files if len(extensions) == 0 or os.path.splitext(f)[-1].lower() in extensions)


def get_full_path(folder_name: str, filename: str) -> str | None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    # normalise and strip any attempt to climb out of the folder
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for folder in folder_names_and_paths[folder_name][0]:
        full_path = os.path.join(folder, filename)
        if os.path.isfile(full_path):
            return full_path
        if os.path.islink(full_path):
            logging.warning("WARNING path {} exists but doesn't link anywhere, skipping.".format(full_path))
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    full_path = get_full_path(folder_name, filename)
    if full_path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return full_path


def get_filename_list_(folder_name: str) -> tuple[list[str], dict[str, float], float]:
    folder_name = map_legacy(folder_name)
    paths, extensions = folder_names_and_paths[folder_name]
    found: set[str] = set()
    folder_mtimes: dict[str, float] = {}
    for folder in paths:
        files, folders = recursive_search(folder, excluded_dir_names=[".git"])
        found.update(filter_files_extensions(files, extensions))
        folder_mtimes.update(folders)
    return sorted(found), folder_mtimes, time.perf_counter()


def cached_filename_list_(folder_name: str):
    strong = cache_helper.get(folder_name)
    if strong is not None:
        return strong
    folder_name = map_legacy(folder_name)
    out = filename_list_cache.get(folder_name)
    if out is None:
        return None
    for folder, mtime in out[1].items():
        if os.path.getmtime(folder) != mtime:
            return None
    for folder in folder_names_and_paths[folder_name][0]:
        if os.path.isdir(folder) and folder not in out[1]:
            return None
    return out


def get_filename_list(folder_name: str) -> list[str]:
    folder_name = map_legacy(folder_name)
    out = cached_filename_list_(folder_name)
    if out is None:
        out = get_filename_list_(folder_name)
        filename_list_cache[folder_name] = out
    cache_helper.set(folder_name, out)
    return list(out[0])


def get_save_image_path(filename_prefix: str, output_dir: str, image_width=0, image_height=0):
    """Returns (full_output_folder, filename, counter, subfolder, filename_prefix) like ComfyUI."""
    def expand_vars(text: str) -> str:
        now = time.localtime()
        for key, value in (("%width%", str(image_width)), ("%height%", str(image_height)),
                           ("%year%", str(now.tm_year)), ("%month%", str(now.tm_mon).zfill(2)),
                           ("%day%", str(now.tm_mday).zfill(2)), ("%hour%", str(now.tm_hour).zfill(2)),
                           ("%minute%", str(now.tm_min).zfill(2)), ("%second%", str(now.tm_sec).zfill(2))):
            text = text.replace(key, value)
        return text

    if "%" in filename_prefix:
        filename_prefix = expand_vars(filename_prefix)

    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)

    common = os.path.commonpath((output_dir, os.path.abspath(full_output_folder)))
    if common != output_dir:
        err = ("**** ERROR: Saving image outside the output folder is not allowed."
               f"\n full_output_folder: {os.path.abspath(full_output_folder)}"
               f"\n         output_dir: {output_dir}"
               f"\n         commonpath: {common}")
        logging.error(err)
        raise Exception(err)

    def counter_of(existing: str):
        prefix_len = len(os.path.basename(filename_prefix))
        prefix = existing[:prefix_len + 1]
        try:
            digits = int(existing[prefix_len + 1:].split('_')[0])
        except Exception:
            digits = 0
        return digits, prefix

    try:
        matches = [counter_of(f) for f in os.listdir(full_output_folder)]
        matches = [m for m in matches
                   if os.path.normcase(m[1][:-1]) == os.path.normcase(filename) and m[1][-1] == "_"]
        counter = max(matches)[0] + 1
    except ValueError:
        counter = 1
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        counter = 1
    return full_output_folder, filename, counter, subfolder, filename_prefix


def get_input_subfolders() -> list[str]:
    input_dir = get_input_directory()
    if not os.path.exists(input_dir):
        return []
    folders = []
    for root, _dirs, _files in os.walk(input_dir):
        rel = os.path.relpath(root, input_dir)
        if rel != ".":
            folders.append(rel.replace(os.sep, '/'))
    return sorted(folders)


if args.emulate_system_users:
    SYSTEM_USER_PREFIX = "__"

    def get_system_user_directory(name: str = "system") -> str:
        """<user dir>/__<name>: internal data no HTTP route serves (newer ComfyUI)."""
        if not name or not isinstance(name, str):
            raise ValueError("System user name cannot be empty")
        if not name.replace("_", "").isalnum():
            raise ValueError(f"Invalid system user name: '{name}'")
        if name.startswith("_"):
            raise ValueError("System user name should not start with underscore")
        return os.path.join(get_user_directory(), f"{SYSTEM_USER_PREFIX}{name}")

    def get_public_user_directory(user_id: str) -> str | None:
        """The folder of a user an HTTP request may name; None for a system user (newer ComfyUI)."""
        if not user_id or not isinstance(user_id, str) or user_id.startswith(SYSTEM_USER_PREFIX):
            return None
        return os.path.join(get_user_directory(), user_id)
