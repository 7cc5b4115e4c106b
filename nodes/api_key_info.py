"""A node that tells a workflow which API key queued it."""

import json

from ..server_routes.install import RUNTIME_KEY


def _running_prompt_id():
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        get_executing_context = None
    context = get_executing_context() if get_executing_context else None
    if context is not None:
        return context.prompt_id
    # Older ComfyUI: the one prompt the worker is running.
    try:
        from server import PromptServer
        running = list(PromptServer.instance.prompt_queue.currently_running.values())
    except (ImportError, AttributeError):
        return None
    return running[0][1] if len(running) == 1 else None


def _installed_runtime():
    """The runtime installed on ComfyUI's app, or None (the package is off or failed to install).
    A node runs on ComfyUI's worker thread, with no request to ask."""
    try:
        from server import PromptServer
        return PromptServer.instance.app.get(RUNTIME_KEY)
    except (ImportError, AttributeError):
        return None


def _caller():
    """The key record that queued the running prompt, or None (anonymous, admin without key)."""
    active = _installed_runtime()
    prompt_id = _running_prompt_id()
    if active is None or prompt_id is None:
        return None
    record, _ = active.job_watch.owner_of_prompt(prompt_id)
    return record


class ApiKeyInfo:
    """Outputs who queued this workflow: the key's name, key_id and metadata."""

    CATEGORY = "utils/api keys"
    DESCRIPTION = ("The API key that queued this workflow: its name, key_id and metadata (as JSON). "
                   "Empty for anonymous prompts and for admins signed in without a key. Never the secret.")
    RETURN_TYPES = ("STRING", "STRING", "STRING")
    RETURN_NAMES = ("name", "key_id", "metadata_json")
    OUTPUT_TOOLTIPS = ("the key's name", "the key's public key_id", "the key's metadata as a JSON object")
    FUNCTION = "describe"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        # ComfyUI's cache ignores who queued a prompt: make the caller part of
        # the signature so another key's run is never served a cached answer.
        record = _caller()
        if record is None:
            return "anonymous"
        return json.dumps([record.key_id, record.name, record.metadata], sort_keys=True)

    def describe(self):
        record = _caller()
        if record is None:
            return ("", "", "{}")
        return (record.name, record.key_id, json.dumps(record.metadata, sort_keys=True, ensure_ascii=False))
