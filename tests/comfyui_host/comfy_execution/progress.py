"""Per-node progress of the running prompt, as in ComfyUI 0.3.64's comfy_execution/progress.py.

The executor calls reset_progress_state() when a prompt starts, then
start_progress(node) before a node runs and finish_progress(node) after it
ran (or was found in the cache). Each call sends the WebSocket message
"progress_state" {"prompt_id", "nodes": {node_id: state}} with every node
that is not pending, to server.client_id: the submitting client, or every
socket when the prompt was queued without a client_id (as ComfyUI does).

Not here: update_progress() and preview images (no node reports progress).
"""
from enum import Enum


class NodeState(Enum):
    Pending = "pending"
    Running = "running"
    Finished = "finished"
    Error = "error"


class ProgressRegistry:
    def __init__(self, prompt_id, dynprompt, server=None):
        self.prompt_id = prompt_id
        self.dynprompt = dynprompt
        self.server = server
        self.nodes = {}

    def ensure_entry(self, node_id):
        return self.nodes.setdefault(node_id, {"state": NodeState.Pending, "value": 0, "max": 1})

    def start_progress(self, node_id):
        entry = self.ensure_entry(node_id)
        entry.update(state=NodeState.Running, value=0.0, max=1.0)
        self._send()

    def finish_progress(self, node_id):
        entry = self.ensure_entry(node_id)
        entry.update(state=NodeState.Finished, value=entry["max"])
        self._send()

    def _send(self):
        if self.server is None:
            return
        dynprompt = self.dynprompt
        active = {
            node_id: {"value": state["value"], "max": state["max"], "state": state["state"].value,
                      "node_id": node_id, "prompt_id": self.prompt_id,
                      "display_node_id": dynprompt.get_display_node_id(node_id),
                      "parent_node_id": dynprompt.get_parent_node_id(node_id),
                      "real_node_id": dynprompt.get_real_node_id(node_id)}
            for node_id, state in self.nodes.items() if state["state"] != NodeState.Pending
        }
        self.server.send_sync("progress_state", {"prompt_id": self.prompt_id, "nodes": active},
                              self.server.client_id)


_registry = None


def reset_progress_state(prompt_id, dynprompt, server=None):
    global _registry
    _registry = ProgressRegistry(prompt_id, dynprompt, server)


def get_progress_state():
    global _registry
    if _registry is None:
        _registry = ProgressRegistry("", None)
    return _registry
