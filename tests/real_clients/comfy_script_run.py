"""Runs a workflow with ComfyScript (comfy-script[client]) the way its README
shows, with the API key as a header of every session it opens (HTTP and the
/ws socket). Usage: comfy_script_run.py BASE_URL; the key in COMFY_API_KEY.
Prints one JSON line: the saved images and the prompt id."""

import asyncio
import json
import os
import sys
import threading

import aiohttp
from comfy_script.client import Client
from comfy_script.runtime import Workflow, load

base_url, key = sys.argv[1], os.environ["COMFY_API_KEY"]

# Its socket watcher connects in a thread of its own after load(); a tiny
# workflow queued before that would end unseen and the task would wait for
# ever. So wait for the /ws handshake (seen through aiohttp's tracing).
socket_open = threading.Event()


async def on_request_end(session, context, params):
    if params.url.path.endswith("/ws") and params.response.status == 101:
        socket_open.set()


tracing = aiohttp.TraceConfig()
tracing.on_request_end.append(on_request_end)
load(Client(base_url, session_factory=lambda: aiohttp.ClientSession(
    headers={"Authorization": f"Bearer {key}"}, trace_configs=[tracing])), save_script_source=False)
if not socket_open.wait(60):
    sys.exit("the socket watcher never connected")
from comfy_script.runtime.nodes import EmptyImage, ImageBlur, SaveImage  # noqa: E402 (made by load())

with Workflow(wait=True) as workflow:  # queued on exit; results arrive over /ws
    image = EmptyImage(16, 16, 1, 0xFF8000)
    image = ImageBlur(image, 2, 1.0)
    saved = SaveImage(image, "comfy_script")
result = workflow.task.wait_result(saved)


async def pixels():  # each image through the client's own /view call
    return [image.getpixel((8, 8)) for image in await result]


print(json.dumps({"prompt_id": workflow.task.prompt_id, "images": result._output["images"],
                  "pixels": asyncio.run(pixels())}), flush=True)
os._exit(0)  # its watch thread never ends by itself
