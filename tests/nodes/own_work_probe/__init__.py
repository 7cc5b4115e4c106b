"""A custom node for tests/test_own_work.py (never shipped): a prompt that
runs until the test releases it, reports the Comfy.org secrets it was handed
(as ComfyUI's partner nodes read them, from the stored queue item), and a
route that shows ComfyUI's stored queue and history items as they are.

* ``OwnWorkHold``: waits (at most 30 s, giving way to /interrupt) until
  ``POST /own_work_probe/release/{gate}``; records its hidden
  ``API_KEY_COMFY_ORG`` and ``AUTH_TOKEN_COMFY_ORG`` under ``gate``.
* ``GET /own_work_probe/seen``: what each gate's node was handed.
* ``GET /own_work_probe/stored``: ``extra_data`` of every running, pending
  and history item, read from ComfyUI's ``prompt_queue`` itself.
"""

import threading
import time

import comfy.model_management
from aiohttp import web
from server import PromptServer

_gates: dict = {}
_seen: dict = {}


def _gate(name):
    return _gates.setdefault(name, threading.Event())


class OwnWorkHold:
    CATEGORY = "testing"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "hold"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"gate": ("STRING", {"default": "gate"})},
                "hidden": {"api_key": "API_KEY_COMFY_ORG", "auth_token": "AUTH_TOKEN_COMFY_ORG"}}

    def hold(self, gate, api_key=None, auth_token=None):
        _seen[gate] = {"api_key_comfy_org": api_key, "auth_token_comfy_org": auth_token}
        event = _gate(gate)
        deadline = time.monotonic() + 30
        while not event.wait(0.05) and time.monotonic() < deadline:
            comfy.model_management.throw_exception_if_processing_interrupted()
        return {"ui": {"text": [gate]}, "result": (gate,)}


NODE_CLASS_MAPPINGS = {"OwnWorkHold": OwnWorkHold}

routes = PromptServer.instance.routes


@routes.post("/own_work_probe/release/{gate}")
async def release(request):
    _gate(request.match_info["gate"]).set()
    return web.json_response({"released": True})


@routes.get("/own_work_probe/seen")
async def seen(request):
    return web.json_response(_seen)


@routes.get("/own_work_probe/stored")
async def stored(request):
    queue = PromptServer.instance.prompt_queue
    with queue.mutex:
        running = {item[1]: item[3] for item in queue.currently_running.values()}
        pending = {item[1]: item[3] for item in queue.queue}
        history = {prompt_id: entry["prompt"][3] for prompt_id, entry in queue.history.items()}
    return web.json_response({"running": running, "pending": pending, "history": history})
