"""Event-loop lag monitor, injected into a benchmarked server process.

``bench/bench.py`` puts this folder on ``PYTHONPATH`` of the server processes
it starts (and of nothing else), so Python imports this module at start-up.
It does nothing unless ``BENCH_LOOPMON_OUT`` names a file.

When active, it wraps ``asyncio.new_event_loop`` so the first loop the
process creates (the ComfyUI stand-in creates exactly one) gets a monitor
task: it sleeps ``BENCH_LOOPMON_INTERVAL`` seconds (default 0.005) in a loop
and records how late each wake-up is. A wake-up is late when the loop was
busy (a long callback, or many short ones), could not get the GIL (another
thread, e.g. the package's database thread, held it), or the process was not
scheduled. The largest lateness in a time window is an upper bound of the
longest stall of the loop in that window.

Each sample also records the CPU time the loop's own thread used during the
interval (``time.thread_time``) and the CPU time of the whole process
(``time.process_time``), so a late wake-up can be told apart: the loop was
busy (its thread was on the CPU), another thread of the server held the GIL
(the process used CPU, the loop's thread did not), or the process was not
scheduled at all (other programs had the CPU).

Samples go to the output file as ``<wall time> <lag> <loop cpu> <process
cpu>`` lines (seconds), appended once a second from the monitor task (a few
kilobytes, buffered) and at exit, so the benchmark can cut them into time
windows.

Garbage-collector pauses of 1 ms or more are recorded too (``gc.callbacks``).

With ``BENCH_LOOPMON_TRACE=1`` it also times every callback the loop runs
(``asyncio.Handle._run``) and records those longer than
``BENCH_LOOPMON_SLOW`` seconds (default 0.002) with the loop thread's CPU
time during it and a name: the task's coroutine, or the callback's qualified
name. That costs about two microseconds a callback, so the benchmark
enables it only in its stall phase, never while it measures throughput.
"""

import os

_OUT = os.environ.get("BENCH_LOOPMON_OUT")

if _OUT:
    import asyncio
    import asyncio.events
    import atexit
    import gc
    import time

    _INTERVAL = float(os.environ.get("BENCH_LOOPMON_INTERVAL", "0.005"))
    _TRACE = os.environ.get("BENCH_LOOPMON_TRACE") == "1"
    _SLOW = float(os.environ.get("BENCH_LOOPMON_SLOW", "0.002"))
    _pending: list = []       # lines not yet written
    _started = [False]

    def _write_pending():
        if not _pending:
            return
        taken = _pending[:]  # other threads (a GC on the database thread) may append meanwhile
        del _pending[:len(taken)]
        lines = "".join(taken)
        with open(_OUT, "a", encoding="utf-8") as handle:
            handle.write(lines)

    atexit.register(_write_pending)

    # Garbage-collector pauses: the collector runs on whichever thread
    # allocates, and its time grows with the number of live objects (100,000
    # cached keys are a few hundred thousand). Pauses of 1 ms or more are
    # recorded as ``<wall time> gc <seconds> <generation>``.
    _gc_started = [0.0]

    def _gc_callback(phase, info, _perf=time.perf_counter):
        if phase == "start":
            _gc_started[0] = _perf()
        elif _gc_started[0]:
            took = _perf() - _gc_started[0]
            if took >= 0.001:
                _pending.append(f"{time.time():.6f} gc {took:.6f} {info.get('generation')}\n")

    gc.callbacks.append(_gc_callback)

    async def _monitor():
        perf = time.perf_counter
        wall = time.time
        thread_cpu = time.thread_time
        process_cpu = time.process_time
        sleep = asyncio.sleep
        interval = _INTERVAL
        last_write = perf()
        while True:
            before, cpu_before, proc_before = perf(), thread_cpu(), process_cpu()
            await sleep(interval)
            after = perf()
            _pending.append(f"{wall():.6f} {after - before - interval:.6f} {thread_cpu() - cpu_before:.6f} "
                            f"{process_cpu() - proc_before:.6f}\n")
            if after - last_write >= 1.0:
                last_write = after
                _write_pending()

    def _start(loop):
        if not _started[0]:
            _started[0] = True
            loop.create_task(_monitor())

    _original_new_event_loop = asyncio.events.new_event_loop

    def new_event_loop():
        loop = _original_new_event_loop()
        loop.call_soon(_start, loop)
        return loop

    asyncio.events.new_event_loop = new_event_loop
    asyncio.new_event_loop = new_event_loop

    if _TRACE:
        _original_run = asyncio.events.Handle._run

        def _describe(handle) -> str:
            callback = handle._callback
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, asyncio.Future) and hasattr(owner, "get_coro"):
                coro = owner.get_coro()
                return "task " + getattr(coro, "__qualname__", repr(coro))
            protocol = getattr(owner, "_protocol", None)
            if protocol is not None:
                return f"{type(owner).__name__}.{getattr(callback, '__name__', '?')} -> {type(protocol).__qualname__}"
            name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", None)
            return name or repr(callback)[:120]

        def _timed_run(self, _perf=time.perf_counter, _cpu=time.thread_time, _run=_original_run):
            start, cpu = _perf(), _cpu()
            _run(self)
            took = _perf() - start
            if took >= _SLOW:
                try:
                    what = _describe(self)
                except Exception as error:  # noqa: BLE001 - a monitor must not break the server
                    what = f"? ({type(error).__name__})"
                _pending.append(f"{time.time():.6f} slow {took:.6f} {_cpu() - cpu:.6f} {what}\n")

        asyncio.events.Handle._run = _timed_run
