"""The interrupt part of ComfyUI's comfy/model_management.py, without torch.

Custom nodes that run long loops call throw_exception_if_processing_interrupted()
or processing_interrupted(); POST /interrupt sets the flag through
nodes.interrupt_processing().
"""
import threading


class InterruptProcessingException(Exception):
    pass


interrupt_processing_mutex = threading.RLock()
interrupt_processing = False


def interrupt_current_processing(value=True):
    global interrupt_processing
    with interrupt_processing_mutex:
        interrupt_processing = value


def processing_interrupted():
    with interrupt_processing_mutex:
        return interrupt_processing


def throw_exception_if_processing_interrupted():
    """Raise once for a pending interrupt and clear the flag (as ComfyUI does)."""
    global interrupt_processing
    with interrupt_processing_mutex:
        if interrupt_processing:
            interrupt_processing = False
            raise InterruptProcessingException()


# Functions ComfyUI's prompt worker calls; nothing to do without models.
def unload_all_models():
    pass


def soft_empty_cache(clear=False):
    pass


def cleanup_models_gc():
    pass
