"""Newer ComfyUI's ``app.assets.services`` as far as the content route uses it:
``resolve_asset_for_download(reference_id=...)`` -> (abs_path, content_type,
download_name), ValueError for an unknown id. ComfyUI keeps assets in its own
database, filled by a scan of the folders; here an asset's id is derived from
its path (uuid5) and the folders are scanned when asked."""

import mimetypes
import os
import uuid
from dataclasses import dataclass

import folder_paths

ASSET_NAMESPACE = uuid.UUID("6f0c5a3e-8d7b-4c1e-9f2a-0b1d2c3e4f50")


@dataclass
class DownloadResolution:
    abs_path: str
    content_type: str
    download_name: str


def scan() -> dict:
    """id -> (root, absolute path) of every file of the input and output folders."""
    found = {}
    for root, folder in (("input", folder_paths.get_input_directory()), ("output", folder_paths.get_output_directory())):
        for directory, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(directory, name)
                found[str(uuid.uuid5(ASSET_NAMESPACE, path))] = (root, path)
    return found


def resolve_asset_for_download(reference_id: str) -> DownloadResolution:
    entry = scan().get(reference_id)
    if entry is None:
        raise ValueError(f"AssetReference {reference_id} not found")
    path = entry[1]
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    return DownloadResolution(path, mimetypes.guess_type(path)[0] or "application/octet-stream",
                              os.path.basename(path))
