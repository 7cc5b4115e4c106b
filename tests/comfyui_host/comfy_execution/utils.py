"""Which prompt/node is executing, as in ComfyUI's comfy_execution/utils.py.

The executor wraps every node call (FUNCTION, IS_CHANGED, VALIDATE_INPUTS)
in CurrentNodeContext, so code running inside a node can find out its
prompt_id and node_id. Outside a node call get_executing_context() is None.
The value lives in a ContextVar, so it is per thread and per asyncio task.
"""
import contextvars
from typing import NamedTuple, Optional


class ExecutionContext(NamedTuple):
    prompt_id: str
    node_id: str
    list_index: Optional[int]


current_executing_context: contextvars.ContextVar[Optional[ExecutionContext]] = contextvars.ContextVar(
    "current_executing_context", default=None)


def get_executing_context() -> Optional[ExecutionContext]:
    return current_executing_context.get(None)


class CurrentNodeContext:
    """`with CurrentNodeContext(prompt_id, node_id, list_index): ...`"""

    def __init__(self, prompt_id: str, node_id: str, list_index: Optional[int] = None):
        self.context = ExecutionContext(prompt_id=prompt_id, node_id=node_id, list_index=list_index)
        self.token = None

    def __enter__(self):
        self.token = current_executing_context.set(self.context)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        if self.token is not None:
            current_executing_context.reset(self.token)
            self.token = None
