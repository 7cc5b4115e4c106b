"""Stand-in for ComfyUI 0.3.64's `nodes` module.

Holds the global registries custom nodes and the server use
(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, EXTENSION_WEB_DIRS,
LOADED_MODULE_DIRS), the interrupt helpers, a handful of torch-free built-in
nodes for tests, and the custom-node loader.

load_custom_node() follows ComfyUI 0.3.64 step by step:
  * the module is registered in sys.modules under the *full path* of the
    package with "." replaced by "_x_" (not the folder basename), so an
    `import <basename>` elsewhere gives a different module object;
  * spec_from_file_location(<that name>, <folder>/__init__.py) -> the spec is a
    package (submodule_search_locations = [<folder>]), so relative imports work;
  * pyproject.toml [tool.comfy] web = "<dir>" registers
    EXTENSION_WEB_DIRS[<project.name>], then WEB_DIRECTORY registers
    EXTENSION_WEB_DIRS[<folder basename>] (both may exist at once);
  * NODE_CLASS_MAPPINGS are merged (built-in names are never overridden when
    loading through init_external_custom_nodes), each class gets
    RELATIVE_PYTHON_MODULE = "custom_nodes.<basename>";
  * a module without NODE_CLASS_MAPPINGS (and without comfy_entrypoint)
    counts as failed ("IMPORT FAILED" in the summary) even though its top
    level code, e.g. route registration, already ran;
  * exceptions are logged with their traceback and reported as failed.
It is a coroutine, as in ComfyUI: `await nodes.load_custom_node(path)`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import struct
import sys
import time
import tomllib
import traceback
import zlib

import comfy.model_management
import folder_paths
from comfy.cli_args import args

MAX_RESOLUTION = 16384


def before_node_execution():
    comfy.model_management.throw_exception_if_processing_interrupted()


def interrupt_processing(value=True):
    comfy.model_management.interrupt_current_processing(value)


# ---------------------------------------------------------------------------
# Built-in test nodes (V1 node API, no torch)
# ---------------------------------------------------------------------------

class PrimitiveString:
    """Outputs the string it is given (like ComfyUI's PrimitiveString)."""

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"value": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "utils/primitive"

    def execute(self, value):
        return (value,)


class PrimitiveInt:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"value": ("INT", {"default": 0, "min": -sys.maxsize, "max": sys.maxsize})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "execute"
    CATEGORY = "utils/primitive"

    def execute(self, value):
        return (value,)


class StringConcatenate:
    """string_a + delimiter + string_b (inputs named like ComfyUI's StringConcatenate)."""

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {
            "string_a": ("STRING", {"multiline": True}),
            "string_b": ("STRING", {"multiline": True}),
            "delimiter": ("STRING", {"default": ""}),
        }}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "utils/string"

    def execute(self, string_a, string_b, delimiter=""):
        return (delimiter.join((string_a, string_b)),)


class SlowNode:
    """Sleeps `seconds` in small steps, checking for /interrupt, then passes `text` through."""

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0, "step": 0.1})},
                "optional": {"text": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "testing"

    def execute(self, seconds, text=""):
        deadline = time.monotonic() + seconds
        while True:
            comfy.model_management.throw_exception_if_processing_interrupted()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(0.05, remaining))
        return (text,)


class FailNode:
    """Raises RuntimeError(message) when executed."""

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"message": ("STRING", {"default": "FailNode failed on purpose"})},
                "optional": {"text": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "testing"

    def execute(self, message, text=""):
        raise RuntimeError(message)


class SaveText:
    """Output node: writes `text` to <output>/<prefix>_<counter>_.txt and reports it as ui output."""

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"text": ("STRING", {"forceInput": True}),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"})}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def save(self, text, filename_prefix="ComfyUI"):
        output_dir = folder_paths.get_output_directory()
        full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, output_dir)
        file = f"{filename}_{counter:05}_.txt"
        with open(os.path.join(full_folder, file), "w", encoding="utf-8") as f:
            f.write(text)
        return {"ui": {"text": [text],
                       "files": [{"filename": file, "subfolder": subfolder, "type": "output"}]}}


# ---------------------------------------------------------------------------
# Image nodes with ComfyUI's names, inputs and outputs, for a workflow that
# needs no model (EmptyImage -> ImageBlur -> SaveImage). An IMAGE is an
# ImageBatch of float RGB pixels in 0..1 instead of a torch tensor.
# ---------------------------------------------------------------------------

class ImageBatch:
    """What flows through an IMAGE socket here: `frames` of `height` rows of
    `width` [r, g, b] floats (ComfyUI: a [batch, height, width, 3] tensor)."""

    def __init__(self, width: int, height: int, frames: list):
        self.width, self.height, self.frames = width, height, frames


def _png(width: int, height: int, rows, text: dict) -> bytes:
    """An 8-bit RGB PNG with tEXt chunks (what PIL writes for SaveImage's metadata)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(min(255, max(0, round(v * 255))) for pixel in row for v in pixel) for row in rows)
    texts = b"".join(chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1"))
                     for key, value in text.items())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + texts + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class EmptyImage:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                             "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                             "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = "image"

    def generate(self, width, height, batch_size=1, color=0):
        pixel = [((color >> 16) & 0xFF) / 255.0, ((color >> 8) & 0xFF) / 255.0, (color & 0xFF) / 255.0]
        frames = [[[list(pixel) for _ in range(width)] for _ in range(height)] for _ in range(batch_size)]
        return (ImageBatch(width, height, frames),)


class ImageBlur:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",),
                             "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                             "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blur"
    CATEGORY = "image/postprocessing"

    def blur(self, image, blur_radius, sigma):
        if blur_radius == 0:
            return (image,)
        weights = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-blur_radius, blur_radius + 1)]
        total = sum(weights)
        weights = [w / total for w in weights]

        def reflect(i, n):  # ComfyUI pads with "reflect"
            while i < 0 or i >= n:
                i = -i if i < 0 else 2 * (n - 1) - i
            return i

        def blur_line(line):
            n = len(line)
            return [[sum(w * line[reflect(x + k - blur_radius, n)][c] for k, w in enumerate(weights)) for c in range(3)]
                    for x in range(n)]

        frames = []
        for frame in image.frames:
            rows = [blur_line(row) for row in frame]
            columns = [blur_line([row[x] for row in rows]) for x in range(image.width)]
            frames.append([[columns[x][y] for x in range(image.width)] for y in range(image.height)])
        return (ImageBatch(image.width, image.height, frames),)


class SaveImage:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        output_dir = folder_paths.get_output_directory()
        full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, output_dir, images.width, images.height)
        text = {}
        if not args.disable_metadata:
            if prompt is not None:
                text["prompt"] = json.dumps(prompt)
            for key, value in (extra_pnginfo or {}).items():
                text[key] = json.dumps(value)
        results = []
        for batch_number, frame in enumerate(images.frames):
            file = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            with open(os.path.join(full_folder, file), "wb") as handle:
                handle.write(_png(images.width, images.height, frame, text))
            results.append({"filename": file, "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": results}}


def _read_png(data: bytes):
    """(width, height, rows of [r, g, b] floats, alpha rows or None) of an 8-bit,
    non-interlaced RGB or RGBA PNG (what SaveImage writes; PIL reads any image)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG image")
    position, idat, header = 8, b"", None
    while position < len(data):
        length, tag = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif tag == b"IDAT":
            idat += chunk
        position += length + 12
    width, height, depth, color_type, _, _, interlace = header
    if depth != 8 or color_type not in (2, 6) or interlace:
        raise ValueError("only 8-bit non-interlaced RGB/RGBA PNGs here")
    channels = 3 if color_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up, corner = previous[x], (previous[x - channels] if x >= channels else 0)
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(line)
        previous = line
    pixels = [[[row[x * channels + c] / 255.0 for c in range(3)] for x in range(width)] for row in rows]
    alpha = [[row[x * channels + 3] / 255.0 for x in range(width)] for row in rows] if channels == 4 else None
    return width, height, pixels, alpha


class LoadImage:
    """ComfyUI's LoadImage: lists the input folder's image files, accepts any
    name `get_annotated_filepath` resolves ("x.png [output]" too) as long as the
    file exists, and loads it (PNG only here; ComfyUI reads any image with PIL)."""

    @classmethod
    def INPUT_TYPES(s):
        input_dir = folder_paths.get_input_directory()
        files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
        files = folder_paths.filter_files_content_types(files, ["image"])
        return {"required": {"image": (sorted(files), {"image_upload": True})}}

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image):
        with open(folder_paths.get_annotated_filepath(image), "rb") as f:
            width, height, pixels, alpha = _read_png(f.read())
        mask = [[1.0 - a for a in row] for row in alpha] if alpha else [[0.0] * 64 for _ in range(64)]
        return (ImageBatch(width, height, [pixels]), [mask])

    @classmethod
    def IS_CHANGED(s, image):
        with open(folder_paths.get_annotated_filepath(image), "rb") as f:
            return hashlib.sha256(f.read()).digest().hex()

    @classmethod
    def VALIDATE_INPUTS(s, image):
        if not folder_paths.exists_annotated_filepath(image):
            return "Invalid image file: {}".format(image)
        return True


NODE_CLASS_MAPPINGS = {
    "EmptyImage": EmptyImage,
    "LoadImage": LoadImage,
    "ImageBlur": ImageBlur,
    "SaveImage": SaveImage,
    "PrimitiveString": PrimitiveString,
    "PrimitiveInt": PrimitiveInt,
    "StringConcatenate": StringConcatenate,
    "SlowNode": SlowNode,
    "FailNode": FailNode,
    "SaveText": SaveText,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "EmptyImage": "EmptyImage",
    "LoadImage": "Load Image",
    "ImageBlur": "Image Blur",
    "SaveImage": "Save Image",
    "PrimitiveString": "String",
    "PrimitiveInt": "Int",
    "StringConcatenate": "Concatenate",
    "SlowNode": "Slow Node (test)",
    "FailNode": "Fail Node (test)",
    "SaveText": "Save Text (test)",
}

# web extension name -> absolute folder served at /extensions/<name>/
EXTENSION_WEB_DIRS = {}

# successfully loaded module name (folder basename) -> absolute folder
LOADED_MODULE_DIRS = {}


def get_module_name(module_path: str) -> str:
    """Folder basename, or file name without extension for a single-file node."""
    base = os.path.basename(module_path)
    if os.path.isfile(module_path):
        base = os.path.splitext(base)[0]
    return base


def _register_pyproject_web_dir(module_path: str):
    """pyproject.toml [tool.comfy] web -> EXTENSION_WEB_DIRS[project.name] (as ComfyUI's comfy_config does)."""
    if os.path.isfile(module_path):
        return  # single-file nodes have no pyproject
    toml_path = os.path.join(module_path, "pyproject.toml")
    if not os.path.exists(toml_path):
        return
    try:
        with open(toml_path, "rb") as f:
            data = tomllib.load(f)
        web_dir_name = data.get("tool", {}).get("comfy", {}).get("web")
        if web_dir_name:
            web_dir_path = os.path.join(module_path, web_dir_name)
            if os.path.isdir(web_dir_path):
                project_name = data.get("project", {}).get("name", "")
                EXTENSION_WEB_DIRS[project_name] = web_dir_path
                logging.info("Automatically register web folder {} for {}".format(web_dir_name, project_name))
    except Exception as e:
        logging.warning(f"Unable to parse pyproject.toml: {e}")


async def load_custom_node(module_path: str, ignore=set(), module_parent="custom_nodes") -> bool:
    module_name = get_module_name(module_path)
    if os.path.isfile(module_path):
        sys_module_name = os.path.splitext(module_path)[0]
    else:
        sys_module_name = module_path.replace(".", "_x_")

    try:
        logging.debug("Trying to load custom node {}".format(module_path))
        if os.path.isfile(module_path):
            module_spec = importlib.util.spec_from_file_location(sys_module_name, module_path)
            module_dir = os.path.split(module_path)[0]
        else:
            module_spec = importlib.util.spec_from_file_location(sys_module_name, os.path.join(module_path, "__init__.py"))
            module_dir = module_path

        module = importlib.util.module_from_spec(module_spec)
        sys.modules[sys_module_name] = module
        module_spec.loader.exec_module(module)

        LOADED_MODULE_DIRS[module_name] = os.path.abspath(module_dir)

        _register_pyproject_web_dir(module_path)

        if getattr(module, "WEB_DIRECTORY", None) is not None:
            web_dir = os.path.abspath(os.path.join(module_dir, getattr(module, "WEB_DIRECTORY")))
            if os.path.isdir(web_dir):
                EXTENSION_WEB_DIRS[module_name] = web_dir

        if getattr(module, "NODE_CLASS_MAPPINGS", None) is not None:
            for name, node_cls in module.NODE_CLASS_MAPPINGS.items():
                if name not in ignore:
                    NODE_CLASS_MAPPINGS[name] = node_cls
                    node_cls.RELATIVE_PYTHON_MODULE = "{}.{}".format(module_parent, module_name)
            if getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) is not None:
                NODE_DISPLAY_NAME_MAPPINGS.update(module.NODE_DISPLAY_NAME_MAPPINGS)
            return True
        elif hasattr(module, "comfy_entrypoint"):
            # ComfyUI would build V3 nodes from a ComfyExtension here; the stand-in has no comfy_api.
            logging.warning(f"comfy_entrypoint in {module_path} is not supported by the ComfyUI stand-in, skipping.")
            return False
        else:
            logging.warning(f"Skip {module_path} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or NODES_LIST (need one).")
            return False
    except Exception as e:
        logging.warning(traceback.format_exc())
        logging.warning(f"Cannot import {module_path} module for custom nodes: {e}")
        return False


def _log_import_times(node_import_times):
    if len(node_import_times) > 0:
        logging.info("\nImport times for custom nodes:")
        for n in sorted(node_import_times):
            import_message = "" if n[2] else " (IMPORT FAILED)"
            logging.info("{:6.1f} seconds{}: {}".format(n[0], import_message, n[1]))
        logging.info("")


async def init_external_custom_nodes(extra_paths=()):
    """Load every entry of <base>/custom_nodes (like ComfyUI), then each `extra_paths` entry
    (the stand-in's --custom-node folders), and log the "Import times" summary."""
    base_node_names = set(NODE_CLASS_MAPPINGS.keys())
    node_import_times = []

    def allowed(name):
        if args.disable_all_custom_nodes and name not in args.whitelist_custom_nodes:
            logging.info(f"Skipping {name} due to disable_all_custom_nodes and whitelist_custom_nodes")
            return False
        return True

    async def timed_load(module_path):
        time_before = time.perf_counter()
        success = await load_custom_node(module_path, base_node_names, module_parent="custom_nodes")
        node_import_times.append((time.perf_counter() - time_before, module_path, success))

    for custom_node_path in folder_paths.get_folder_paths("custom_nodes"):
        real = os.path.realpath(custom_node_path)
        if not os.path.isdir(real):
            continue
        possible_modules = os.listdir(real)
        if "__pycache__" in possible_modules:
            possible_modules.remove("__pycache__")
        for possible_module in possible_modules:
            module_path = os.path.join(custom_node_path, possible_module)
            if os.path.isfile(module_path) and os.path.splitext(module_path)[1] != ".py":
                continue
            if module_path.endswith(".disabled"):
                continue
            if allowed(possible_module):
                await timed_load(module_path)

    for module_path in extra_paths:
        module_path = os.path.abspath(module_path)
        if allowed(get_module_name(module_path)):
            await timed_load(module_path)

    _log_import_times(node_import_times)


async def init_extra_nodes(init_custom_nodes=True, init_api_nodes=True, extra_paths=()):
    """ComfyUI loads comfy_extras / api nodes here too; the stand-in only has custom nodes."""
    if init_custom_nodes:
        await init_external_custom_nodes(extra_paths)
    else:
        logging.info("Skipping loading of custom nodes")
