"""/experiment/models routes, modelled on ComfyUI 0.3.64's app/model_manager.py.

* GET /experiment/models: [{"name": folder, "folders": [paths]}] for every
  model folder except "configs" and "custom_nodes".
* GET /experiment/models/{folder}: every model file under the folder's
  paths, as {"name", "pathIndex", "modified", "created", "size"}; 404 for an
  unknown folder.
* GET /experiment/models/preview/{folder}/{path_index}/{filename}: the image
  next to a model file (same base name, or "<name>.preview.<ext>"). ComfyUI
  converts it to WebP with PIL and also reads cover images from safetensors
  metadata; the stand-in serves the image file as it is.
"""
import glob
import os

from aiohttp import web

import folder_paths

HIDDEN_FOLDERS = ("configs", "custom_nodes")


def model_files(folder_name):
    files = []
    for index, folder in enumerate(folder_paths.get_folder_paths(folder_name)):
        for dirpath, subdirs, filenames in os.walk(folder, followlinks=True):
            subdirs[:] = [d for d in subdirs if d != ".git" and not d.startswith(".")]
            names = [f for f in filenames if not f.startswith(".")]
            for name in folder_paths.filter_files_extensions(names, folder_paths.supported_pt_extensions):
                path = os.path.join(dirpath, name)
                files.append({"name": os.path.relpath(path, folder), "pathIndex": index,
                              "modified": os.path.getmtime(path), "created": os.path.getctime(path),
                              "size": os.path.getsize(path)})
    return files


def preview_of(model_path):
    base = os.path.splitext(model_path)[0]
    candidates = folder_paths.filter_files_content_types(glob.glob(glob.escape(base) + ".*"), ["image"])
    return next((c for c in candidates if os.path.splitext(c)[0] in (base, base + ".preview")), None)


class ModelFileManager:
    def add_routes(self, routes):
        @routes.get("/experiment/models")
        async def get_model_folders(request):
            return web.json_response([{"name": name, "folders": folder_paths.get_folder_paths(name)}
                                      for name in folder_paths.folder_names_and_paths
                                      if name not in HIDDEN_FOLDERS])

        @routes.get("/experiment/models/{folder}")
        async def get_all_models(request):
            folder = request.match_info.get("folder", None)
            if folder not in folder_paths.folder_names_and_paths:
                return web.Response(status=404)
            return web.json_response(model_files(folder))

        @routes.get("/experiment/models/preview/{folder}/{path_index}/{filename:.*}")
        async def get_model_preview(request):
            folder = request.match_info.get("folder", None)
            if folder not in folder_paths.folder_names_and_paths:
                return web.Response(status=404)
            try:
                root = folder_paths.folder_names_and_paths[folder][0][int(request.match_info["path_index"])]
            except (ValueError, IndexError):
                return web.Response(status=404)
            preview = preview_of(os.path.join(root, request.match_info.get("filename", "")))
            if preview is None or not os.path.isfile(preview):
                return web.Response(status=404)
            return web.FileResponse(preview)
