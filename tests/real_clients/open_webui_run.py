"""Runs an image generation through Open WebUI's ComfyUI client
(``open_webui.utils.images.comfyui``, from the open-webui wheel) as Open
WebUI's image router calls it: the key from its "ComfyUI API Key" field,
sent as ``Authorization: Bearer <key>``, or ``Bearer `` with nothing after
it when the field is empty (its default). Usage: open_webui_run.py BASE_URL;
the key in COMFY_API_KEY (may be empty). Prints one JSON line."""

import asyncio
import json
import os
import sys
import tempfile
import uuid

# open_webui.env reads these at import: a data folder of its own, and the
# secret its server would generate (unused by the ComfyUI client).
os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="open-webui-"))
os.environ.setdefault("WEBUI_SECRET_KEY", uuid.uuid4().hex)

from open_webui.utils.images.comfyui import (  # noqa: E402
    ComfyUICreateImageForm,
    ComfyUINodeInput,
    ComfyUIWorkflow,
    comfyui_create_image,
    get_image,
)
from open_webui.utils.session_pool import get_session  # noqa: E402

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0x00FF00}},
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
}


async def main(base_url, api_key):
    form = ComfyUICreateImageForm(
        workflow=ComfyUIWorkflow(workflow=json.dumps(WORKFLOW), nodes=[
            ComfyUINodeInput(type="prompt", node_ids=["3"], key="filename_prefix"),
            ComfyUINodeInput(type="width", node_ids=["1"]),
            ComfyUINodeInput(type="height", node_ids=["1"]),
            ComfyUINodeInput(type="n", node_ids=["1"]),
        ]),
        prompt="open_webui", width=12, height=10, n=1)
    try:
        result = await comfyui_create_image("none", form, str(uuid.uuid4()), base_url, api_key)
        if result is None:  # it logs the failure and answers None
            return {"ok": False}
        url = result["data"][0]["url"]
        query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
        image = await get_image(query["filename"], query["subfolder"], query["type"], base_url, api_key)
        return {"ok": True, "urls": [item["url"] for item in result["data"]], "png": image.startswith(b"\x89PNG")}
    finally:
        await (await get_session()).close()


print(json.dumps(asyncio.run(main(sys.argv[1], os.environ.get("COMFY_API_KEY", "")))), flush=True)
