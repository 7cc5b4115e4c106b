"""Each key's work is its own: secrets out of queue and history answers, and
ComfyUI's history paging over one key's prompts.

Pure functions over ComfyUI's data shapes; ``server_routes/own_work.py``
applies them to ``/queue``, ``/history``, ``/interrupt`` and ``/api/jobs``.

A queue item is ``(number, prompt_id, prompt, extra_data, outputs_to_execute)``
(newer ComfyUI adds a sixth element, the secrets it keeps apart, which it
never answers); a history entry is ``{"prompt": <queue item>, "outputs": ...,
"status": ..., "meta": ...}``. Scrubbing copies only the containers on the
way to a secret: everything else in an answer is ComfyUI's own object, so
nothing ComfyUI stores is changed (partner nodes read ``api_key_comfy_org``
from the stored item while the prompt runs) and an item without secrets
costs no copy.
"""

import json

# A field whose name holds one of these (any case) is a secret.
SECRET_WORDS = ("key", "token", "secret", "password")
ITEM_LENGTH = 5  # what ComfyUI answers of a queue item
_VERDICTS_MAX = 4096

_verdicts: dict = {}  # field name -> is it a secret; names repeat (workflow fields), so remembered


def is_secret_name(name) -> bool:
    """Whether a field named ``name`` holds a secret: its name contains key,
    token, secret or password in any case (``api_key_comfy_org``,
    ``auth_token_comfy_org``, ``Password``, ``clientSecret``...)."""
    verdict = _verdicts.get(name)
    if verdict is None:
        lowered = name.lower() if isinstance(name, str) else ""
        verdict = any(word in lowered for word in SECRET_WORDS)
        if len(_verdicts) >= _VERDICTS_MAX:
            _verdicts.clear()
        _verdicts[name] = verdict
    return verdict


def _scrub(value):
    if isinstance(value, dict):
        copy = None
        for name, inner in value.items():
            if is_secret_name(name):
                if copy is None:
                    copy = dict(value)
                del copy[name]
            elif isinstance(inner, (dict, list)):
                cleaned = _scrub(inner)
                if cleaned is not inner:
                    if copy is None:
                        copy = dict(value)
                    copy[name] = cleaned
        return value if copy is None else copy
    if isinstance(value, list):
        copy = None
        for index, inner in enumerate(value):
            if isinstance(inner, (dict, list)):
                cleaned = _scrub(inner)
                if cleaned is not inner:
                    if copy is None:
                        copy = list(value)
                    copy[index] = cleaned
        return value if copy is None else copy
    return value


def scrub(value):
    """``value`` without any field named like a secret, at any depth: the
    same object when there is none, else a copy of only what had to change."""
    try:
        return _scrub(value)
    except RecursionError:
        # Nested deeper than we can walk: answer none of it rather than a secret.
        return {} if isinstance(value, dict) else None


def answered_item(item):
    """A queue item as it may be answered: its first five elements, with
    secrets out of ``extra_data``. ``item`` itself when that changes nothing."""
    if not isinstance(item, (tuple, list)) or len(item) < 4:
        return item
    extra_data = item[3]
    cleaned = scrub(extra_data)
    if cleaned is extra_data and len(item) <= ITEM_LENGTH:
        return item
    answer = list(item[:ITEM_LENGTH])
    answer[3] = cleaned
    return answer


def answered_history_entry(entry):
    """A history entry as it may be answered (its ``prompt`` item scrubbed)."""
    if not isinstance(entry, dict):
        return entry
    item = entry.get("prompt")
    answer = answered_item(item)
    if answer is item:
        return entry
    entry = dict(entry)
    entry["prompt"] = answer
    return entry


def might_hold_secret(text: str) -> bool:
    """Whether JSON text may hold a field named like a secret. False only when
    it holds none of the words anywhere (names, values, prompts alike) and no
    escaped character (whose lower case could spell one): then the walk of
    ``scrub`` would find nothing, and is skipped."""
    if "\\u" in text:
        return True
    lowered = text.lower()
    return any(word in lowered for word in SECRET_WORDS)


def item_json(item) -> str:
    """The JSON text of ``answered_item(item)``, as ``json.dumps`` writes it."""
    if isinstance(item, (tuple, list)) and len(item) <= ITEM_LENGTH:
        text = json.dumps(item)
        if not might_hold_secret(text):
            return text
    return json.dumps(answered_item(item))


def entry_json(entry) -> str:
    """The JSON text of ``answered_history_entry(entry)``, as ``json.dumps`` writes it."""
    item = entry.get("prompt") if isinstance(entry, dict) else None
    if not isinstance(item, (tuple, list)) or len(item) <= ITEM_LENGTH:
        text = json.dumps(entry)
        if not might_hold_secret(text):
            return text
    return json.dumps(answered_history_entry(entry))


def history_json(entries) -> str:
    """``json.dumps({prompt id: answered entry})`` for (prompt id, entry) pairs,
    byte for byte, each entry dumped once when it holds no secret."""
    return "{" + ", ".join(json.dumps(prompt_id) + ": " + entry_json(entry) for prompt_id, entry in entries) + "}"


def queue_json(running, pending) -> str:
    """``json.dumps({"queue_running": [...], "queue_pending": [...]})`` of answered items."""
    return ('{"queue_running": [' + ", ".join(item_json(item) for item in running)
            + '], "queue_pending": [' + ", ".join(item_json(item) for item in pending) + "]}")


def history_page(own_ids, present, max_items, offset):
    """The ids ComfyUI's ``get_history(max_items=, offset=)`` would pick if
    the history held only the caller's prompts: ``own_ids`` oldest first (a
    reversible ordered collection), counting only those ``present`` in the
    history. Touches only the caller's ids; the usual request (``max_items``
    without ``offset``: the newest ones) walks back from the newest and stops
    once it has them."""
    if offset < 0 and max_items is not None:
        # ComfyUI: offset = len - max_items, then at most max_items from there,
        # i.e. the last max_items (none when max_items <= 0).
        page = []
        if max_items <= 0:
            return page
        for prompt_id in reversed(own_ids):
            if prompt_id in present:
                page.append(prompt_id)
                if len(page) >= max_items:
                    break
        page.reverse()
        return page
    page, index = [], 0
    for prompt_id in own_ids:
        if prompt_id in present:
            if index >= offset:
                page.append(prompt_id)
                # As ComfyUI: checked after adding, so max_items <= 0 still gives one.
                if max_items is not None and len(page) >= max_items:
                    break
            index += 1
    return page
