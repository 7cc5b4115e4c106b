"""The pure parts of "each key's work is its own": secrets scrubbed from the
copies answered (ComfyUI's own objects untouched), history paging over one
key's prompts as ComfyUI pages the whole history, and the JobTracker's
per-key index of prompt ids."""

import copy
import json
import itertools
import random
from collections import OrderedDict

import pytest

from conftest import package_module

own_work = package_module("core.own_work")
jobs = package_module("core.jobs")


# ---- secrets ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["api_key_comfy_org", "auth_token_comfy_org", "API_KEY", "apiKey", "Token",
                                  "client_secret", "Client_Secret", "PASSWORD", "myPassword", "x-api-key",
                                  "accessTokens", "keystore"])
def test_names_like_a_key_token_secret_or_password_are_secrets(name):
    assert own_work.is_secret_name(name)


@pytest.mark.parametrize("name", ["client_id", "extra_pnginfo", "workflow", "create_time", "prompt", "nodes",
                                  "comfy_usage_source", "", 3, None])
def test_other_names_are_not(name):
    assert not own_work.is_secret_name(name)


def test_scrub_removes_secrets_at_any_depth_and_copies_only_what_changes():
    shared = {"nodes": [{"id": 1, "widgets_values": [1, 2]}], "links": []}
    untouched_list = [{"a": 1}]
    extra = {"client_id": "c", "api_key_comfy_org": "k", "auth_token_comfy_org": "t",
             "extra_pnginfo": {"workflow": shared, "service": [{"Password": "p", "user": "u"}, untouched_list]},
             "Other": {"deep": {"deeper": {"secret_value": "s", "kept": 1}}}}
    before = copy.deepcopy(extra)
    cleaned = own_work.scrub(extra)
    assert cleaned == {"client_id": "c", "extra_pnginfo": {"workflow": shared, "service": [{"user": "u"}, untouched_list]},
                       "Other": {"deep": {"deeper": {"kept": 1}}}}
    assert extra == before  # the original is ComfyUI's: never changed
    assert cleaned["extra_pnginfo"]["workflow"] is shared  # no secret below: the same object, not a copy
    assert cleaned["extra_pnginfo"]["service"][1] is untouched_list


def test_scrub_answers_the_same_object_when_there_is_no_secret():
    value = {"client_id": "c", "extra_pnginfo": {"workflow": {"nodes": [[1, {"x": 2}]]}}}
    assert own_work.scrub(value) is value
    assert own_work.scrub([1, "a", None]) is not None
    assert own_work.scrub("text") == "text"


def test_scrub_of_a_structure_too_deep_to_walk_answers_nothing_of_it():
    deep = {"level": 0}
    node = deep
    for level in range(100000):
        node["next"] = {"level": level}
        node = node["next"]
    node["api_key"] = "k"
    assert own_work.scrub(deep) == {}


def test_an_answered_queue_item_keeps_five_elements_and_comfyuis_item_is_untouched():
    extra = {"client_id": "c", "api_key_comfy_org": "k"}
    item = (3, "id", {"1": {}}, extra, ["1"])
    answer = own_work.answered_item(item)
    assert answer == [3, "id", {"1": {}}, {"client_id": "c"}, ["1"]]
    assert item[3] == {"client_id": "c", "api_key_comfy_org": "k"}
    clean = (3, "id", {}, {"client_id": "c"}, [])
    assert own_work.answered_item(clean) is clean
    newer = (3, "id", {}, {"client_id": "c"}, [], {"api_key_comfy_org": "k"})  # newer ComfyUI keeps secrets apart
    assert own_work.answered_item(newer) == [3, "id", {}, {"client_id": "c"}, []]


def test_an_answered_history_entry_is_a_shallow_copy_only_when_it_held_a_secret():
    outputs = {"9": {"images": []}}
    entry = {"prompt": (1, "id", {}, {"password": "p"}, []), "outputs": outputs, "status": None}
    answer = own_work.answered_history_entry(entry)
    assert answer["prompt"][3] == {} and answer["outputs"] is outputs
    assert entry["prompt"][3] == {"password": "p"}
    clean = {"prompt": (1, "id", {}, {}, []), "outputs": {}}
    assert own_work.answered_history_entry(clean) is clean


# ---- history paging -------------------------------------------------------------------------------------

def comfyui_get_history(history, max_items=None, offset=-1):
    """ComfyUI 0.3.64's PromptQueue.get_history(max_items=, offset=) (execution.py), the ids it picks."""
    out = []
    i = 0
    if offset < 0 and max_items is not None:
        offset = len(history) - max_items
    for k in history:
        if i >= offset:
            out.append(k)
            if max_items is not None and len(out) >= max_items:
                break
        i += 1
    return out


def test_history_paging_over_own_items_matches_comfyui_paging_a_history_of_only_those():
    rng = random.Random(14)
    for _ in range(300):
        everyone = [f"p{n}" for n in range(rng.randint(0, 40))]
        mine = [prompt_id for prompt_id in everyone if rng.random() < 0.4]
        # The key's index remembers more than the history holds (deleted, pushed out).
        own_index = OrderedDict((prompt_id, None) for prompt_id in mine + [f"gone{n}" for n in range(3)])
        present = {prompt_id: {} for prompt_id in everyone}
        only_mine = {prompt_id: {} for prompt_id in own_index if prompt_id in present}
        for max_items, offset in itertools.product([None, -3, 0, 1, 2, 5, 50], [-1, 0, 1, 3, 100]):
            expected = comfyui_get_history(only_mine, max_items, offset)
            assert own_work.history_page(own_index, present, max_items, offset) == expected, (max_items, offset)


def test_history_paging_for_the_newest_items_stops_once_it_has_them():
    class Counting(dict):
        looked = 0

        def __contains__(self, item):
            Counting.looked += 1
            return dict.__contains__(self, item)

    own_index = OrderedDict((f"p{n}", None) for n in range(10000))
    present = Counting((f"p{n}", {}) for n in range(10000))
    assert own_work.history_page(own_index, present, 50, -1) == [f"p{n}" for n in range(9950, 10000)]
    assert Counting.looked == 50


# ---- the per-key index ----------------------------------------------------------------------------------

def test_the_tracker_remembers_each_keys_prompts_in_order_and_forgets_them_with_their_owner(monkeypatch):
    monkeypatch.setattr(jobs, "OWNER_MEMORY", 5)
    tracker = jobs.JobTracker()
    for n, key_pk in enumerate([1, 2, 1, None, 1, 2, 1]):
        tracker.queued(f"p{n}", key_pk, "key" if key_pk else "anonymous", float(n))
    # p0 and p1 were forgotten (memory 5): with their owner, out of the key's index too.
    assert list(tracker.prompts_of(1)) == ["p2", "p4", "p6"]
    assert list(tracker.prompts_of(2)) == ["p5"]
    assert list(tracker.prompts_of(3)) == []
    assert tracker.owned_by("p4", 1) and not tracker.owned_by("p4", 2) and not tracker.owned_by("p3", 1)
    assert not tracker.owned_by("p0", 1)
    for n in range(7, 12):
        tracker.queued(f"p{n}", 3, "key", float(n))
    assert 1 not in tracker.by_key and 2 not in tracker.by_key  # no empty index left behind


# ---- the answers' JSON text ---------------------------------------------------------------------------

ENTRIES = [
    {"prompt": (1, "a", {"1": {"inputs": {"text": "a monkey"}}}, {"client_id": "c"}, ["1"]), "outputs": {}},
    {"prompt": (2, "b", {}, {"client_id": "c", "extra_pnginfo": {"workflow": {"nodes": [{"id": 1}]}}}, []),
     "outputs": {"9": {"images": [{"filename": "x.png"}]}}, "status": None},
    {"prompt": (3, "c", {}, {"nested": [{"Api_Key": "SECRET-a"}]}, [])},
    {"prompt": (4, "d", {}, {"\u212aey": "SECRET-b", "ok": "\u00e9"}, [])},  # KELVIN SIGN: "Key".lower() == "key"
    {"prompt": (5, "e", {}, {"path": "C:\\users\\me"}, [])},
    {"prompt": (6, "f", {}, {"client_id": "c"}, [], {"api_key_comfy_org": "SECRET-c"})},
]


def test_the_json_text_of_an_answer_is_json_dumps_of_the_scrubbed_answer_byte_for_byte():
    pairs = [(entry["prompt"][1], entry) for entry in ENTRIES]
    expected = json.dumps({prompt_id: own_work.answered_history_entry(entry) for prompt_id, entry in pairs})
    assert own_work.history_json(pairs) == expected
    assert own_work.history_json([]) == json.dumps({})
    assert "SECRET" not in expected
    items = [entry["prompt"] for entry in ENTRIES]
    assert own_work.queue_json(items[:2], items[2:]) == json.dumps(
        {"queue_running": [own_work.answered_item(item) for item in items[:2]],
         "queue_pending": [own_work.answered_item(item) for item in items[2:]]})
    assert own_work.queue_json([], []) == json.dumps({"queue_running": [], "queue_pending": []})
    assert own_work.is_secret_name("\u212aey")


def test_text_without_any_secret_word_or_escape_skips_the_walk():
    assert not own_work.might_hold_secret(json.dumps({"client_id": "c", "prompt": "a cat"}))
    for text in ('{"Token": 1}', '{"x": "a monkey"}', '{"\\u212aey": 1}', '{"p": "C:\\\\users"}'):
        assert own_work.might_hold_secret(text), text
