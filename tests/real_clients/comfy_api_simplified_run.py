"""Runs a workflow with comfy-api-simplified, which speaks only HTTP Basic:
the API key is the password (any user name), on every HTTP call and in the
/ws URL (the websockets library sends it as Basic). Usage:
comfy_api_simplified_run.py BASE_URL; the key in COMFY_API_KEY. Prints one
JSON line: the prompt id, the socket messages it read, the images' sizes."""

import json
import logging
import os
import random
import sys

from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0x0080FF},
          "_meta": {"title": "Empty Image"}},
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 2, "sigma": 1.0},
          "_meta": {"title": "Blur"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "simplified"},
          "_meta": {"title": "Save Image"}},
}


class SocketMessages(logging.Handler):
    """The library logs each /ws message it reads at DEBUG: keep their types."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.types = []

    def emit(self, record):
        if isinstance(record.msg, dict) and "type" in record.msg:
            self.types.append(record.msg["type"])


messages = SocketMessages()
library_log = logging.getLogger("comfy_api_simplified.comfy_api_wrapper")
library_log.setLevel(logging.DEBUG)
library_log.addHandler(messages)

api = ComfyApiWrapper(sys.argv[1], user="comfy", password=os.environ["COMFY_API_KEY"])
workflow = ComfyWorkflowWrapper(WORKFLOW)
workflow.set_node_param("Empty Image", "width", 160)  # big enough that the socket sees it run
workflow.set_node_param("Empty Image", "height", 160)
workflow.set_node_param("Empty Image", "color", random.randrange(0x1000000))  # never a cached run
images = api.queue_and_wait_images(workflow, "Save Image")
print(json.dumps({"images": {name: len(data) for name, data in images.items()},
                  "png": all(data.startswith(b"\x89PNG") for data in images.values()),
                  "socket_messages": messages.types}), flush=True)
