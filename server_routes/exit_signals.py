"""The last flush when the process is told to stop (SIGTERM, SIGINT).

ComfyUI installs no signal handler of its own: SIGTERM (systemd, ``docker
stop``) kills the process at once, skipping ``on_shutdown`` and ``atexit``,
and Ctrl-C raises KeyboardInterrupt out of the event loop, skipping
``on_shutdown``. The quota this process claimed and did not spend would then
stay charged to its keys for the rest of the hour, and counts not yet
flushed would be lost.

So each of the two signals gets a handler on the event loop. It runs between
two callbacks, so the counters it drains are never half-updated, and it does
the runtime's last flush (``flush_sync``: bounded in time). Then it puts back
whatever handled the signal before and hands the signal on, so the process
stops exactly as it would have without this package: the default SIGTERM
action kills it, Python's SIGINT handler raises KeyboardInterrupt, and a
handler on the loop (an embedding's graceful shutdown, another package) is
called. A signal the process ignores, or one handled outside Python, is left
alone.
"""

import logging
import signal

log = logging.getLogger("comfyui_api_auth")

SIGNAL_NAMES = ("SIGTERM", "SIGINT")


def flush_on_exit_signals(loop, last_flush):
    """Run ``last_flush()`` (synchronous) on SIGTERM and SIGINT, then let the signal do what it did before."""
    for name in SIGNAL_NAMES:
        number = getattr(signal, name, None)
        previous = _current_handler(loop, number) if number is not None else None
        if previous is None:
            continue
        try:
            loop.add_signal_handler(number, _on_signal, loop, number, previous, last_flush)
        except (NotImplementedError, RuntimeError, ValueError):
            # Windows, or a loop outside the main thread: no loop signal handlers.
            # Ctrl-C still ends in atexit, which runs the same last flush.
            return


def _current_handler(loop, number):
    """("loop", handle) or ("python", handler) now in charge of ``number``; None to leave it alone."""
    on_loop = getattr(loop, "_signal_handlers", {}).get(number)  # asyncio keeps one handle per signal
    if on_loop is not None:
        return "loop", on_loop
    handler = signal.getsignal(number)
    if handler is None or handler == signal.SIG_IGN:  # set outside Python, or ignored: nothing stops
        return None
    return "python", handler


def _on_signal(loop, number, previous, last_flush):
    try:
        last_flush()
    except Exception:  # noqa: BLE001 - the signal must go on whatever happened
        log.exception("[api-auth] the last flush failed")
    finally:
        _hand_on(loop, number, previous)


def _hand_on(loop, number, previous):
    kind, handler = previous
    if kind == "loop":
        loop.add_signal_handler(number, handler._callback, *handler._args)
        handler._callback(*handler._args)
        return
    loop.remove_signal_handler(number)
    signal.signal(number, handler)
    # Delivered again, now to the old handler: SIG_DFL ends the process as
    # the signal would have, a Python handler runs here (KeyboardInterrupt
    # for Ctrl-C, propagating out of the event loop as before).
    signal.raise_signal(number)
