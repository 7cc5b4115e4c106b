"""Prompt queue, validation and a small executor, modelled on ComfyUI 0.3.64's execution.py.

What matches ComfyUI:
  * PromptQueue: heap of (number, prompt_id, prompt, extra_data, outputs_to_execute)
    5-tuples (0.3.64 has no separate "sensitive" element), deep copy of the
    running item, history entries {"prompt", "outputs", "status", "meta"},
    SENSITIVE_EXTRA_DATA_KEYS removed from extra_data only when the item moves
    to history (GET /queue shows extra_data verbatim, keys included).
  * validate_prompt(): the same error dicts ("invalid_prompt",
    "prompt_no_outputs", "required_input_missing", "return_type_mismatch",
    "value_not_in_list", min/max, "custom_validation_failed", ...) and the same
    (ok, error, outputs, node_errors) result; literal INT/FLOAT/STRING/BOOLEAN
    inputs are converted in place.
  * PromptExecutor: only nodes an output node depends on run, in ComfyUI's
    topological order with its "output node first" pick; inputs are wrapped in
    lists and mapped over (INPUT_IS_LIST / OUTPUT_IS_LIST honoured); hidden
    inputs PROMPT, DYNPROMPT, EXTRA_PNGINFO, UNIQUE_ID, AUTH_TOKEN_COMFY_ORG,
    API_KEY_COMFY_ORG; node calls run inside CurrentNodeContext; an interrupt
    is raised before each node function call (and wherever a node checks).
  * Cache: outputs and ui results are keyed by the node's input signature
    (class_type, IS_CHANGED result, literal inputs, and the same for all
    ancestors); IS_CHANGED is called on the class with the node's literal
    inputs (linked inputs are None); an exception in IS_CHANGED gives NaN; a
    fresh NaN never equals a previous one, so such nodes always run. Classic
    mode keeps only entries used by the latest prompt; node objects are
    reused per (node id, class_type).
  * Websocket events and history status exactly as ComfyUI emits them.

  * "progress_state" messages when a node starts and finishes (see
    comfy_execution/progress.py).

Not supported: node expansion ("expand"), lazy inputs / check_lazy_status
(lazy inputs are simply evaluated), V3 (comfy_api) nodes, "progress"
messages (no node reports progress). Async node functions are awaited in place.
"""
import asyncio
import copy
import heapq
import inspect
import itertools
import logging
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import List, Literal, NamedTuple, Optional, Union

import comfy.model_management
import nodes
from comfy_execution.progress import get_progress_state, reset_progress_state
from comfy_execution.utils import CurrentNodeContext

SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

MAXIMUM_HISTORY_SIZE = 10000


class ExecutionResult(Enum):
    SUCCESS = 0
    FAILURE = 1
    PENDING = 2


class CacheType(Enum):
    CLASSIC = 0
    LRU = 1
    DEPENDENCY_AWARE = 2


class DependencyCycleError(Exception):
    pass


class NodeExpansionNotSupported(Exception):
    pass


# ---------------------------------------------------------------------------
# graph helpers
# ---------------------------------------------------------------------------

def is_link(obj):
    """[node_id: str, output_index: int|float]"""
    return (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)
            and isinstance(obj[1], (int, float)))


def get_input_info(class_def, input_name, valid_inputs=None):
    """(input_type, "required"|"optional"|"hidden", extra_info) or (None, None, None)."""
    valid_inputs = valid_inputs or class_def.INPUT_TYPES()
    for category in ("required", "optional", "hidden"):
        if category in valid_inputs and input_name in valid_inputs[category]:
            info = valid_inputs[category][input_name]
            if info is None:
                return None, None, None
            if isinstance(info, str):  # hidden inputs are plain strings
                return info, category, {}
            extra = info[1] if len(info) > 1 else {}
            return info[0], category, extra
    return None, None, None


def validate_node_input(received_type, input_type, strict=False) -> bool:
    """Same rules as comfy_execution/validation.py: '*' / equal types / overlapping comma lists."""
    if not received_type != input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    wanted = {t.strip() for t in input_type.split(",")}
    return received.issubset(wanted) if strict else len(received & wanted) > 0


class DynamicPrompt:
    """The subset of ComfyUI's DynamicPrompt a DYNPROMPT hidden input may use."""

    def __init__(self, original_prompt):
        self.original_prompt = original_prompt

    def get_node(self, node_id):
        if node_id in self.original_prompt:
            return self.original_prompt[node_id]
        raise KeyError(f"Node {node_id} not found")

    def has_node(self, node_id):
        return node_id in self.original_prompt

    def all_node_ids(self):
        return set(self.original_prompt.keys())

    def get_original_prompt(self):
        return self.original_prompt

    def get_real_node_id(self, node_id):
        return node_id

    def get_display_node_id(self, node_id):
        return node_id

    def get_parent_node_id(self, node_id):
        return None


# ---------------------------------------------------------------------------
# cache keys
# ---------------------------------------------------------------------------

class Unhashable:
    def __init__(self):
        self.value = float("NaN")


def to_hashable(obj):
    if isinstance(obj, (int, float, str, bool, type(None))):
        return obj
    if isinstance(obj, Mapping):
        return frozenset((to_hashable(k), to_hashable(v)) for k, v in sorted(obj.items()))
    if isinstance(obj, Sequence):
        return frozenset(zip(itertools.count(), [to_hashable(i) for i in obj]))
    return Unhashable()


_UNIQUE_ID_CLASSES = {}


def _includes_unique_id(class_type):
    if class_type not in _UNIQUE_ID_CLASSES:
        class_def = nodes.NODE_CLASS_MAPPINGS[class_type]
        _UNIQUE_ID_CLASSES[class_type] = "UNIQUE_ID" in class_def.INPUT_TYPES().get("hidden", {}).values()
    return _UNIQUE_ID_CLASSES[class_type]


class IsChangedCache:
    """Calls IS_CHANGED once per node per prompt; missing IS_CHANGED -> False, exception -> NaN."""

    def __init__(self, prompt_id, dynprompt):
        self.prompt_id = prompt_id
        self.dynprompt = dynprompt
        self.is_changed = {}

    async def get(self, node_id):
        if node_id in self.is_changed:
            return self.is_changed[node_id]
        node = self.dynprompt.get_node(node_id)
        class_def = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        if not hasattr(class_def, "IS_CHANGED"):
            self.is_changed[node_id] = False
            return False
        # only literal inputs: linked inputs are passed as None
        input_data_all, _ = get_input_data(node["inputs"], class_def, node_id, None)
        try:
            result = await _map_node_over_list(self.prompt_id, node_id, class_def, input_data_all, "IS_CHANGED")
            value = list(result)
        except Exception as e:
            logging.warning("WARNING: {}".format(e))
            value = float("NaN")
        self.is_changed[node_id] = value
        return value


async def _ordered_ancestry(dynprompt, node_id):
    ancestors, order = [], {}

    def walk(nid):
        if not dynprompt.has_node(nid):
            return
        inputs = dynprompt.get_node(nid)["inputs"]
        for key in sorted(inputs.keys()):
            if is_link(inputs[key]):
                ancestor = inputs[key][0]
                if ancestor not in order:
                    ancestors.append(ancestor)
                    order[ancestor] = len(ancestors) - 1
                    walk(ancestor)

    walk(node_id)
    return ancestors, order


async def _immediate_signature(dynprompt, node_id, order, is_changed_cache):
    if not dynprompt.has_node(node_id):
        return [float("NaN")]
    node = dynprompt.get_node(node_id)
    class_type = node["class_type"]
    class_def = nodes.NODE_CLASS_MAPPINGS[class_type]
    signature = [class_type, await is_changed_cache.get(node_id)]
    if getattr(class_def, "NOT_IDEMPOTENT", False) or _includes_unique_id(class_type):
        signature.append(node_id)
    inputs = node["inputs"]
    for key in sorted(inputs.keys()):
        if is_link(inputs[key]):
            ancestor_id, socket = inputs[key]
            signature.append((key, ("ANCESTOR", order[ancestor_id], socket)))
        else:
            signature.append((key, inputs[key]))
    return signature


async def node_signature(dynprompt, node_id, is_changed_cache):
    ancestors, order = await _ordered_ancestry(dynprompt, node_id)
    signature = [await _immediate_signature(dynprompt, node_id, order, is_changed_cache)]
    for ancestor in ancestors:
        signature.append(await _immediate_signature(dynprompt, ancestor, order, is_changed_cache))
    return to_hashable(signature)


class NodeCache:
    """node id -> key for the current prompt; key -> value across prompts."""

    def __init__(self, by_signature=True, mode=CacheType.CLASSIC, max_size=0):
        self.by_signature = by_signature
        self.mode = mode
        self.max_size = max_size
        self.cache = OrderedDict()
        self.keys = {}

    async def set_prompt(self, dynprompt, node_ids, is_changed_cache):
        self.keys = {}
        for node_id in node_ids:
            if self.by_signature:
                self.keys[node_id] = await node_signature(dynprompt, node_id, is_changed_cache)
            else:
                self.keys[node_id] = (node_id, dynprompt.get_node(node_id)["class_type"])

    def clean_unused(self):
        used = set(self.keys.values())
        if self.mode == CacheType.DEPENDENCY_AWARE:
            self.cache.clear()
        elif self.mode == CacheType.LRU:
            for key in used:
                if key in self.cache:
                    self.cache.move_to_end(key)
            while len(self.cache) > self.max_size:
                oldest = next(iter(self.cache))
                if oldest in used:
                    break
                del self.cache[oldest]
        else:
            for key in [k for k in self.cache if k not in used]:
                del self.cache[key]

    def all_node_ids(self):
        return set(self.keys.keys())

    def get(self, node_id):
        key = self.keys.get(node_id)
        if key is None:
            return None
        return self.cache.get(key)

    def set(self, node_id, value):
        self.cache[self.keys[node_id]] = value


class CacheSet:
    def __init__(self, cache_type=None, cache_size=None):
        mode = cache_type if isinstance(cache_type, CacheType) else CacheType.CLASSIC
        if mode == CacheType.DEPENDENCY_AWARE:
            logging.info("Disabling intermediate node cache.")
        elif mode == CacheType.LRU:
            logging.info("Using LRU cache")
        self.outputs = NodeCache(True, mode, cache_size or 0)
        self.ui = NodeCache(True, mode, cache_size or 0)
        self.objects = NodeCache(False, CacheType.CLASSIC if mode == CacheType.LRU else mode)
        self.all = [self.outputs, self.ui, self.objects]


# ---------------------------------------------------------------------------
# calling nodes
# ---------------------------------------------------------------------------

def get_input_data(inputs, class_def, unique_id, outputs=None, dynprompt=None, extra_data={}):
    """-> (input_data_all: {name: [values]}, missing_keys)."""
    valid_inputs = class_def.INPUT_TYPES()
    input_data_all = {}
    missing_keys = {}
    for x in inputs:
        input_data = inputs[x]
        _, input_category, input_info = get_input_info(class_def, x, valid_inputs)

        if is_link(input_data) and (not input_info or not input_info.get("rawLink", False)):
            source_id, output_index = input_data[0], int(input_data[1])
            cached_output = outputs.get(source_id) if outputs is not None else None
            if cached_output is None or output_index >= len(cached_output):
                missing_keys[x] = True
                input_data_all[x] = (None,)
                continue
            input_data_all[x] = cached_output[output_index]
        elif input_category is not None:
            input_data_all[x] = [input_data]

    hidden = valid_inputs.get("hidden", {})
    for name, kind in hidden.items():
        if kind == "PROMPT":
            input_data_all[name] = [dynprompt.get_original_prompt() if dynprompt is not None else {}]
        elif kind == "DYNPROMPT":
            input_data_all[name] = [dynprompt]
        elif kind == "EXTRA_PNGINFO":
            input_data_all[name] = [extra_data.get('extra_pnginfo', None)]
        elif kind == "UNIQUE_ID":
            input_data_all[name] = [unique_id]
        elif kind == "AUTH_TOKEN_COMFY_ORG":
            input_data_all[name] = [extra_data.get("auth_token_comfy_org", None)]
        elif kind == "API_KEY_COMFY_ORG":
            input_data_all[name] = [extra_data.get("api_key_comfy_org", None)]
    return input_data_all, missing_keys


async def _map_node_over_list(prompt_id, unique_id, obj, input_data_all, func, allow_interrupt=False):
    """Call obj.func once per list element (or once with whole lists if INPUT_IS_LIST)."""
    input_is_list = getattr(obj, "INPUT_IS_LIST", False)
    max_len = max((len(v) for v in input_data_all.values()), default=0)
    results = []

    async def call(inputs, index=None):
        if allow_interrupt:
            nodes.before_node_execution()
        f = getattr(obj, func)
        with CurrentNodeContext(prompt_id, unique_id, index):
            if inspect.iscoroutinefunction(f):
                results.append(await f(**inputs))
            else:
                results.append(f(**inputs))

    if input_is_list:
        await call(input_data_all, 0)
    elif max_len == 0:
        await call({})
    else:
        for i in range(max_len):
            await call({k: v[i if len(v) > i else -1] for k, v in input_data_all.items()}, i)
    return results


def merge_result_data(results, obj):
    output = []
    output_is_list = getattr(obj, "OUTPUT_IS_LIST", [False] * len(results[0]))
    for i, is_list in zip(range(len(results[0])), output_is_list):
        if is_list:
            value = []
            for o in results:
                value.extend(o[i])
            output.append(value)
        else:
            output.append([o[i] for o in results])
    return output


def get_output_from_returns(return_values, obj):
    results = []
    uis = []
    for r in return_values:
        if isinstance(r, dict):
            if 'ui' in r:
                uis.append(r['ui'])
            if 'expand' in r:
                raise NodeExpansionNotSupported("node expansion ('expand') is not supported by the ComfyUI stand-in")
            if 'result' in r:
                results.append(r.get("result", None))
        else:
            results.append(r)
    output = merge_result_data(results, obj) if len(results) > 0 else []
    ui = {}
    if len(uis) > 0:
        ui = {k: [y for x in uis for y in x[k]] for k in uis[0].keys()}
    return output, ui


def format_value(x):
    if x is None:
        return None
    if isinstance(x, (int, float, bool, str)):
        return x
    return str(x)


def full_type_name(klass):
    module = klass.__module__
    if module == 'builtins':
        return klass.__qualname__
    return module + '.' + klass.__qualname__


async def execute(server, dynprompt, caches, unique_id, extra_data, executed, prompt_id):
    inputs = dynprompt.get_node(unique_id)['inputs']
    class_type = dynprompt.get_node(unique_id)['class_type']
    class_def = nodes.NODE_CLASS_MAPPINGS[class_type]

    if caches.outputs.get(unique_id) is not None:
        if server.client_id is not None:
            cached_ui = caches.ui.get(unique_id) or {}
            server.send_sync("executed", {"node": unique_id, "display_node": unique_id,
                                          "output": cached_ui.get("output", None), "prompt_id": prompt_id},
                             server.client_id)
        get_progress_state().finish_progress(unique_id)
        return (ExecutionResult.SUCCESS, None, None)

    input_data_all = None
    try:
        get_progress_state().start_progress(unique_id)
        input_data_all, _missing = get_input_data(inputs, class_def, unique_id, caches.outputs, dynprompt, extra_data)
        if server.client_id is not None:
            server.last_node_id = unique_id
            server.send_sync("executing", {"node": unique_id, "display_node": unique_id, "prompt_id": prompt_id},
                             server.client_id)

        obj = caches.objects.get(unique_id)
        if obj is None:
            obj = class_def()
            caches.objects.set(unique_id, obj)

        return_values = await _map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION,
                                                  allow_interrupt=True)
        output_data, output_ui = get_output_from_returns(return_values, class_def)

        if len(output_ui) > 0:
            caches.ui.set(unique_id, {
                "meta": {"node_id": unique_id, "display_node": unique_id, "parent_node": None,
                         "real_node_id": unique_id},
                "output": output_ui,
            })
            if server.client_id is not None:
                server.send_sync("executed", {"node": unique_id, "display_node": unique_id, "output": output_ui,
                                              "prompt_id": prompt_id}, server.client_id)
        caches.outputs.set(unique_id, output_data)
    except comfy.model_management.InterruptProcessingException as iex:
        logging.info("Processing interrupted")
        return (ExecutionResult.FAILURE, {"node_id": unique_id}, iex)
    except Exception as ex:
        typ, _, tb = sys.exc_info()
        input_data_formatted = {}
        if input_data_all is not None:
            for name, values in input_data_all.items():
                input_data_formatted[name] = [format_value(x) for x in values]
        logging.error(f"!!! Exception during processing !!! {ex}")
        logging.error(traceback.format_exc())
        error_details = {
            "node_id": unique_id,
            "exception_message": "{}\n{}".format(ex, ""),
            "exception_type": full_type_name(typ),
            "traceback": traceback.format_tb(tb),
            "current_inputs": input_data_formatted,
        }
        return (ExecutionResult.FAILURE, error_details, ex)

    get_progress_state().finish_progress(unique_id)
    executed.add(unique_id)
    return (ExecutionResult.SUCCESS, None, None)


class ExecutionList:
    """Topological scheduling like ComfyUI's ExecutionList (without lazy/external blocks)."""

    def __init__(self, dynprompt, output_cache):
        self.dynprompt = dynprompt
        self.output_cache = output_cache
        self.pending = {}
        self.block_count = {}
        self.blocking = {}
        self.staged = None

    def is_cached(self, node_id):
        return self.output_cache.get(node_id) is not None

    def add_node(self, node_id):
        stack, links = [node_id], []
        while stack:
            uid = stack.pop()
            if uid in self.pending:
                continue
            self.pending[uid] = True
            self.block_count[uid] = 0
            self.blocking[uid] = {}
            for value in self.dynprompt.get_node(uid)["inputs"].values():
                if is_link(value) and not self.is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], value[1], uid))
        for from_id, socket, to_id in links:
            if not self.is_cached(from_id):
                if to_id not in self.blocking[from_id]:
                    self.blocking[from_id][to_id] = {}
                    self.block_count[to_id] += 1
                self.blocking[from_id][to_id][socket] = True

    def is_empty(self):
        return len(self.pending) == 0

    def _is_output(self, node_id):
        class_def = nodes.NODE_CLASS_MAPPINGS[self.dynprompt.get_node(node_id)["class_type"]]
        return getattr(class_def, 'OUTPUT_NODE', False) is True

    def _pick(self, ready):
        for nid in ready:
            class_def = nodes.NODE_CLASS_MAPPINGS[self.dynprompt.get_node(nid)["class_type"]]
            if self._is_output(nid) or inspect.iscoroutinefunction(getattr(class_def, class_def.FUNCTION)):
                return nid
        for nid in ready:
            if any(self._is_output(b) for b in self.blocking[nid]):
                return nid
        for nid in ready:
            if any(self._is_output(b2) for b in self.blocking[nid] for b2 in self.blocking[b]):
                return nid
        return ready[0]

    def stage_node_execution(self):
        if self.is_empty():
            return None, None, None
        ready = [nid for nid in self.pending if self.block_count[nid] == 0]
        if not ready:
            blamed = next(iter(self.pending))
            ex = DependencyCycleError("Dependency cycle detected")
            return None, {"node_id": blamed, "exception_message": str(ex),
                          "exception_type": "graph.DependencyCycleError", "traceback": [],
                          "current_inputs": []}, ex
        self.staged = self._pick(ready)
        return self.staged, None, None

    def complete_node_execution(self):
        node_id = self.staged
        del self.pending[node_id]
        for blocked in self.blocking[node_id]:
            self.block_count[blocked] -= 1
        del self.blocking[node_id]
        self.staged = None


class PromptExecutor:
    def __init__(self, server, cache_type=False, cache_size=None):
        self.cache_size = cache_size
        self.cache_type = cache_type
        self.server = server
        self.reset()

    def reset(self):
        self.caches = CacheSet(cache_type=self.cache_type, cache_size=self.cache_size)
        self.status_messages = []
        self.success = True
        self.history_result = {"outputs": {}, "meta": {}}

    def add_message(self, event, data: dict, broadcast: bool):
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.status_messages.append((event, data))
        if self.server.client_id is not None or broadcast:
            self.server.send_sync(event, data, self.server.client_id)

    def handle_execution_error(self, prompt_id, prompt, current_outputs, executed, error, ex):
        node_id = error["node_id"]
        class_type = prompt[node_id]["class_type"]
        if isinstance(ex, comfy.model_management.InterruptProcessingException):
            mes = {"prompt_id": prompt_id, "node_id": node_id, "node_type": class_type,
                   "executed": list(executed)}
            self.add_message("execution_interrupted", mes, broadcast=True)
        else:
            mes = {"prompt_id": prompt_id, "node_id": node_id, "node_type": class_type,
                   "executed": list(executed),
                   "exception_message": error["exception_message"],
                   "exception_type": error["exception_type"],
                   "traceback": error["traceback"],
                   "current_inputs": error["current_inputs"],
                   "current_outputs": list(current_outputs)}
            self.add_message("execution_error", mes, broadcast=False)

    def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        asyncio.run(self.execute_async(prompt, prompt_id, extra_data, execute_outputs))

    async def execute_async(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        nodes.interrupt_processing(False)

        self.server.client_id = extra_data.get("client_id")
        self.status_messages = []
        self.add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)

        dynprompt = DynamicPrompt(prompt)
        reset_progress_state(prompt_id, dynprompt, self.server)
        is_changed_cache = IsChangedCache(prompt_id, dynprompt)
        for cache in self.caches.all:
            await cache.set_prompt(dynprompt, prompt.keys(), is_changed_cache)
            cache.clean_unused()

        cached_nodes = [nid for nid in prompt if self.caches.outputs.get(nid) is not None]
        self.add_message("execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id}, broadcast=False)

        executed = set()
        execution_list = ExecutionList(dynprompt, self.caches.outputs)
        current_outputs = self.caches.outputs.all_node_ids()
        for node_id in list(execute_outputs):
            execution_list.add_node(node_id)

        while not execution_list.is_empty():
            node_id, error, ex = execution_list.stage_node_execution()
            if error is not None:
                self.success = False
                self.handle_execution_error(prompt_id, prompt, current_outputs, executed, error, ex)
                break
            result, error, ex = await execute(self.server, dynprompt, self.caches, node_id, extra_data, executed,
                                              prompt_id)
            self.success = result != ExecutionResult.FAILURE
            if result == ExecutionResult.FAILURE:
                self.handle_execution_error(prompt_id, prompt, current_outputs, executed, error, ex)
                break
            execution_list.complete_node_execution()
        else:
            self.add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)

        ui_outputs, meta_outputs = {}, {}
        for node_id in self.caches.ui.all_node_ids():
            ui_info = self.caches.ui.get(node_id)
            if ui_info is not None:
                ui_outputs[node_id] = ui_info["output"]
                meta_outputs[node_id] = ui_info["meta"]
        self.history_result = {"outputs": ui_outputs, "meta": meta_outputs}
        self.server.last_node_id = None


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

def _error(type_, message, details, extra_info=None):
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


async def validate_inputs(prompt_id, prompt, item, validated):
    unique_id = item
    if unique_id in validated:
        return validated[unique_id]

    inputs = prompt[unique_id]['inputs']
    class_type = prompt[unique_id]['class_type']
    obj_class = nodes.NODE_CLASS_MAPPINGS[class_type]

    class_inputs = obj_class.INPUT_TYPES()
    valid_inputs = set(class_inputs.get('required', {})).union(set(class_inputs.get('optional', {})))

    errors = []
    valid = True

    validate_function = getattr(obj_class, "VALIDATE_INPUTS", None)
    validate_function_inputs = []
    validate_has_kwargs = False
    if validate_function is not None:
        argspec = inspect.getfullargspec(validate_function)
        validate_function_inputs = argspec.args
        validate_has_kwargs = argspec.varkw is not None
    received_types = {}

    for x in valid_inputs:
        input_type, input_category, extra_info = get_input_info(obj_class, x, class_inputs)
        if x not in inputs:
            if input_category == "required":
                errors.append(_error("required_input_missing", "Required input is missing", f"{x}",
                                     {"input_name": x}))
            continue

        val = inputs[x]
        info = (input_type, extra_info)
        if isinstance(val, list):
            if len(val) != 2:
                errors.append(_error("bad_linked_input",
                                     "Bad linked input, must be a length-2 list of [node_id, slot_index]", f"{x}",
                                     {"input_name": x, "input_config": info, "received_value": val}))
                continue
            o_id = val[0]
            try:
                o_class_type = prompt[o_id]['class_type']
                received_type = nodes.NODE_CLASS_MAPPINGS[o_class_type].RETURN_TYPES[val[1]]
                received_types[x] = received_type
                if 'input_types' not in validate_function_inputs and not validate_node_input(received_type, input_type):
                    errors.append(_error(
                        "return_type_mismatch", "Return type mismatch between linked nodes",
                        f"{x}, received_type({received_type}) mismatch input_type({input_type})",
                        {"input_name": x, "input_config": info, "received_type": received_type,
                         "linked_node": val}))
                    continue
                r = await validate_inputs(prompt_id, prompt, o_id, validated)
                if r[0] is False:
                    valid = False
                    continue
            except Exception as ex:
                typ, _, tb = sys.exc_info()
                valid = False
                reasons = [_error("exception_during_inner_validation", "Exception when validating inner node",
                                  str(ex), {"input_name": x, "input_config": info, "exception_message": str(ex),
                                            "exception_type": full_type_name(typ),
                                            "traceback": traceback.format_tb(tb), "linked_node": val})]
                validated[o_id] = (False, reasons, o_id)
                continue
        else:
            try:
                if isinstance(val, dict) and "__value__" in val:
                    val = val["__value__"]
                    inputs[x] = val
                if input_type == "INT":
                    val = int(val)
                    inputs[x] = val
                if input_type == "FLOAT":
                    val = float(val)
                    inputs[x] = val
                if input_type == "STRING":
                    val = str(val)
                    inputs[x] = val
                if input_type == "BOOLEAN":
                    val = bool(val)
                    inputs[x] = val
            except Exception as ex:
                errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                                     f"{x}, {val}, {ex}",
                                     {"input_name": x, "input_config": info, "received_value": val,
                                      "exception_message": str(ex)}))
                continue

            if x not in validate_function_inputs and not validate_has_kwargs:
                if "min" in extra_info and val < extra_info["min"]:
                    errors.append(_error("value_smaller_than_min",
                                         "Value {} smaller than min of {}".format(val, extra_info["min"]), f"{x}",
                                         {"input_name": x, "input_config": info, "received_value": val}))
                    continue
                if "max" in extra_info and val > extra_info["max"]:
                    errors.append(_error("value_bigger_than_max",
                                         "Value {} bigger than max of {}".format(val, extra_info["max"]), f"{x}",
                                         {"input_name": x, "input_config": info, "received_value": val}))
                    continue
                if isinstance(input_type, list) and val not in input_type:
                    if len(input_type) > 20:
                        list_info, input_config = f"(list of length {len(input_type)})", None
                    else:
                        list_info, input_config = str(input_type), info
                    errors.append(_error("value_not_in_list", "Value not in list", f"{x}: '{val}' not in {list_info}",
                                         {"input_name": x, "input_config": input_config, "received_value": val}))
                    continue

    if len(validate_function_inputs) > 0 or validate_has_kwargs:
        input_data_all, _ = get_input_data(inputs, obj_class, unique_id)
        input_filtered = {x: input_data_all[x] for x in input_data_all
                          if x in validate_function_inputs or validate_has_kwargs}
        if 'input_types' in validate_function_inputs:
            input_filtered['input_types'] = [received_types]
        ret = await _map_node_over_list(prompt_id, unique_id, obj_class, input_filtered, "VALIDATE_INPUTS")
        for x in input_filtered:
            for r in ret:
                if r is not True:
                    details = f"{x}" + (f" - {str(r)}" if r is not False else "")
                    errors.append(_error("custom_validation_failed", "Custom validation failed for node", details,
                                         {"input_name": x}))

    ret = (False, errors, unique_id) if (len(errors) > 0 or valid is not True) else (True, [], unique_id)
    validated[unique_id] = ret
    return ret


async def validate_prompt(prompt_id, prompt, partial_execution_list: Optional[list[str]]):
    """-> (valid, error, outputs_to_execute, node_errors)"""
    outputs = set()
    for x in prompt:
        if 'class_type' not in prompt[x]:
            return (False, _error("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                                  f"Node ID '#{x}'"), [], {})
        class_type = prompt[x]['class_type']
        class_ = nodes.NODE_CLASS_MAPPINGS.get(class_type, None)
        if class_ is None:
            return (False, _error("invalid_prompt", f"Cannot execute because node {class_type} does not exist.",
                                  f"Node ID '#{x}'"), [], {})
        if getattr(class_, 'OUTPUT_NODE', False) is True:
            if partial_execution_list is None or x in partial_execution_list:
                outputs.add(x)

    if len(outputs) == 0:
        return (False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {})

    good_outputs = set()
    errors = []
    node_errors = {}
    validated = {}
    for o in outputs:
        try:
            valid, reasons, _ = await validate_inputs(prompt_id, prompt, o, validated)
        except Exception as ex:
            typ, _, tb = sys.exc_info()
            valid = False
            reasons = [_error("exception_during_validation", "Exception when validating node", str(ex),
                              {"exception_type": full_type_name(typ), "traceback": traceback.format_tb(tb)})]
            validated[o] = (False, reasons, o)

        if valid is True:
            good_outputs.add(o)
            continue
        logging.error(f"Failed to validate prompt for output {o}:")
        if len(reasons) > 0:
            logging.error("* (prompt):")
            for reason in reasons:
                logging.error(f"  - {reason['message']}: {reason['details']}")
        errors += [(o, reasons)]
        for node_id, (node_valid, node_reasons, _) in validated.items():
            if node_valid is not True and len(node_reasons) > 0:
                if node_id not in node_errors:
                    node_errors[node_id] = {"errors": node_reasons, "dependent_outputs": [],
                                            "class_type": prompt[node_id]['class_type']}
                    logging.error(f"* {prompt[node_id]['class_type']} {node_id}:")
                    for reason in node_reasons:
                        logging.error(f"  - {reason['message']}: {reason['details']}")
                node_errors[node_id]["dependent_outputs"].append(o)
        logging.error("Output will be ignored")

    if len(good_outputs) == 0:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in errors for e in errs)
        return (False, _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details),
                list(good_outputs), node_errors)

    return (True, None, list(good_outputs), node_errors)


# ---------------------------------------------------------------------------
# queue
# ---------------------------------------------------------------------------

class PromptQueue:
    def __init__(self, server):
        self.server = server
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.task_counter = 0
        self.queue = []
        self.currently_running = {}
        self.history = {}
        self.flags = {}

    def put(self, item):
        with self.mutex:
            heapq.heappush(self.queue, item)
            self.server.queue_updated()
            self.not_empty.notify()

    def get(self, timeout=None):
        with self.not_empty:
            while len(self.queue) == 0:
                self.not_empty.wait(timeout=timeout)
                if timeout is not None and len(self.queue) == 0:
                    return None
            item = heapq.heappop(self.queue)
            i = self.task_counter
            self.currently_running[i] = copy.deepcopy(item)
            self.task_counter += 1
            self.server.queue_updated()
            return (item, i)

    class ExecutionStatus(NamedTuple):
        status_str: Literal['success', 'error']
        completed: bool
        messages: List[str]

    def task_done(self, item_id, history_result, status: Optional['PromptQueue.ExecutionStatus']):
        with self.mutex:
            prompt = self.currently_running.pop(item_id)
            if len(self.history) > MAXIMUM_HISTORY_SIZE:
                self.history.pop(next(iter(self.history)))

            status_dict = copy.deepcopy(status._asdict()) if status is not None else None

            # the API key / auth token never reach the history
            for sensitive_val in SENSITIVE_EXTRA_DATA_KEYS:
                if sensitive_val in prompt[3]:
                    prompt[3].pop(sensitive_val)

            self.history[prompt[1]] = {"prompt": prompt, "outputs": {}, 'status': status_dict}
            self.history[prompt[1]].update(history_result)
            self.server.queue_updated()

    def get_current_queue(self):
        with self.mutex:
            return (list(self.currently_running.values()), copy.deepcopy(self.queue))

    def get_current_queue_volatile(self):
        with self.mutex:
            return ([x for x in self.currently_running.values()], copy.copy(self.queue))

    def get_tasks_remaining(self):
        with self.mutex:
            return len(self.queue) + len(self.currently_running)

    def wipe_queue(self):
        with self.mutex:
            self.queue = []
            self.server.queue_updated()

    def delete_queue_item(self, function):
        with self.mutex:
            for x in range(len(self.queue)):
                if function(self.queue[x]):
                    if len(self.queue) == 1:
                        self.wipe_queue()
                    else:
                        self.queue.pop(x)
                        heapq.heapify(self.queue)
                    self.server.queue_updated()
                    return True
        return False

    def get_history(self, prompt_id=None, max_items=None, offset=-1, map_function=None):
        with self.mutex:
            if prompt_id is None:
                out = {}
                if offset < 0 and max_items is not None:
                    offset = len(self.history) - max_items
                for i, k in enumerate(self.history):
                    if i >= offset:
                        p = self.history[k]
                        out[k] = map_function(p) if map_function is not None else p
                        if max_items is not None and len(out) >= max_items:
                            break
                return out
            if prompt_id in self.history:
                p = self.history[prompt_id]
                return {prompt_id: copy.deepcopy(p) if map_function is None else map_function(p)}
            return {}

    def wipe_history(self):
        with self.mutex:
            self.history = {}

    def delete_history_item(self, id_to_delete):
        with self.mutex:
            self.history.pop(id_to_delete, None)

    def set_flag(self, name, data):
        with self.mutex:
            self.flags[name] = data
            self.not_empty.notify()

    def get_flags(self, reset=True):
        with self.mutex:
            if reset:
                ret = self.flags
                self.flags = {}
                return ret
            return self.flags.copy()
