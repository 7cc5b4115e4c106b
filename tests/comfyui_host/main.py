"""Entry point of the ComfyUI 0.3.64 stand-in.

    python tests/comfyui_host/main.py --custom-node /path/to/package --port 8188

Order of events, as in ComfyUI's main.py:
  parse args -> logging -> apply --output/--input/--user-directory ->
  new event loop -> server.PromptServer(loop) -> load custom nodes
  (<base>/custom_nodes/* then every --custom-node) -> prompt_server.add_routes()
  -> prompt worker thread -> prompt_server.setup() -> start_multi_address()
  (AppRunner.setup() = on_startup + freeze, one TCPSite per --listen address,
  "To see the GUI go to: ...") together with publish_loop().

Signals as in ComfyUI: no handler, so SIGTERM kills the process where it
stands (no on_shutdown, no atexit) and Ctrl+C raises KeyboardInterrupt out
of the loop ("Stopped server", no on_shutdown; atexit runs). Stand-in option:
--graceful-signals stops cleanly instead, running the app's on_shutdown and
on_cleanup handlers, as an embedding with its own handler might.
"""
import os
import sys

# This folder plays the role of the ComfyUI root: `import server`, `nodes`,
# `folder_paths`, `execution`, `comfy.*`, `comfy_execution.*`, `app.*` resolve here.
_HERE = os.path.dirname(os.path.realpath(__file__))
if sys.path[0] != _HERE:
    sys.path.insert(0, _HERE)

import comfy.options  # noqa: E402
comfy.options.enable_args_parsing()

import logging  # noqa: E402
import time  # noqa: E402

import folder_paths  # noqa: E402
from app.logger import setup_logger  # noqa: E402
from comfy.cli_args import args  # noqa: E402

if __name__ == "__main__":
    # ComfyUI sets these for the benefit of custom nodes
    os.environ['HF_HUB_DISABLE_TELEMETRY'] = '1'
    os.environ['DO_NOT_TRACK'] = '1'

setup_logger(log_level=args.verbose, use_stdout=args.log_stdout)


def apply_custom_paths():
    if args.output_directory:
        output_dir = os.path.abspath(args.output_directory)
        logging.info(f"Setting output directory to: {output_dir}")
        folder_paths.set_output_directory(output_dir)

    # default folders that model-saving nodes write to
    for name in ("checkpoints", "clip", "vae", "diffusion_models", "loras"):
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.get_output_directory(), name))

    if args.input_directory:
        input_dir = os.path.abspath(args.input_directory)
        logging.info(f"Setting input directory to: {input_dir}")
        folder_paths.set_input_directory(input_dir)

    if args.user_directory:
        user_dir = os.path.abspath(args.user_directory)
        logging.info(f"Setting user directory to: {user_dir}")
        folder_paths.set_user_directory(user_dir)


apply_custom_paths()

import asyncio  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402

import comfyui_version  # noqa: E402
import execution  # noqa: E402
import nodes  # noqa: E402
import server  # noqa: E402
import app.logger  # noqa: E402


def prompt_worker(q, server_instance):
    """Runs queued prompts one by one on a daemon thread (ComfyUI's prompt_worker)."""
    cache_type = execution.CacheType.CLASSIC
    if args.cache_lru > 0:
        cache_type = execution.CacheType.LRU
    elif args.cache_none:
        cache_type = execution.CacheType.DEPENDENCY_AWARE

    e = execution.PromptExecutor(server_instance, cache_type=cache_type, cache_size=args.cache_lru)
    last_gc_collect = 0.0
    need_gc = False
    gc_collect_interval = 10.0
    current_time = 0.0

    while True:
        timeout = 1000.0
        if need_gc:
            timeout = max(gc_collect_interval - (current_time - last_gc_collect), 0.0)

        queue_item = q.get(timeout=timeout)
        if queue_item is not None:
            item, item_id = queue_item
            execution_start_time = time.perf_counter()
            prompt_id = item[1]
            server_instance.last_prompt_id = prompt_id

            e.execute(item[2], prompt_id, item[3], item[4])
            need_gc = True
            q.task_done(item_id, e.history_result,
                        status=execution.PromptQueue.ExecutionStatus(
                            status_str='success' if e.success else 'error',
                            completed=e.success,
                            messages=e.status_messages))
            if server_instance.client_id is not None:
                server_instance.send_sync("executing", {"node": None, "prompt_id": prompt_id},
                                          server_instance.client_id)

            current_time = time.perf_counter()
            execution_time = current_time - execution_start_time
            if execution_time > 600:
                logging.info(f"Prompt executed in {time.strftime('%H:%M:%S', time.gmtime(execution_time))}")
            else:
                logging.info("Prompt executed in {:.2f} seconds".format(execution_time))

        flags = q.get_flags()
        free_memory = flags.get("free_memory", False)
        if flags.get("unload_models", free_memory):
            need_gc = True
            last_gc_collect = 0
        if free_memory:
            e.reset()
            need_gc = True
            last_gc_collect = 0

        if need_gc:
            current_time = time.perf_counter()
            if (current_time - last_gc_collect) > gc_collect_interval:
                gc.collect()
                last_gc_collect = current_time
                need_gc = False


async def run(server_instance, address='', port=8188, verbose=True, call_on_start=None):
    addresses = [(addr, port) for addr in address.split(",")]
    await asyncio.gather(server_instance.start_multi_address(addresses, call_on_start, verbose),
                         server_instance.publish_loop())


def cleanup_temp():
    temp_dir = folder_paths.get_temp_directory()
    if os.path.exists(temp_dir):
        shutil.rmtree(temp_dir, ignore_errors=True)


def start_comfyui(asyncio_loop=None):
    """Same contract as ComfyUI: returns (loop, prompt_server, start_all coroutine function)."""
    if args.temp_directory:
        temp_dir = os.path.join(os.path.abspath(args.temp_directory), "temp")
        logging.info(f"Setting temp directory to: {temp_dir}")
        folder_paths.set_temp_directory(temp_dir)
    cleanup_temp()

    if not asyncio_loop:
        asyncio_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(asyncio_loop)
    prompt_server = server.PromptServer(asyncio_loop)

    asyncio_loop.run_until_complete(nodes.init_extra_nodes(
        init_custom_nodes=(not args.disable_all_custom_nodes) or len(args.whitelist_custom_nodes) > 0,
        extra_paths=args.custom_node,
    ))

    prompt_server.add_routes()

    threading.Thread(target=prompt_worker, daemon=True,
                     args=(prompt_server.prompt_queue, prompt_server,)).start()

    if args.quick_test_for_ci:
        exit(0)

    os.makedirs(folder_paths.get_temp_directory(), exist_ok=True)

    async def start_all():
        await prompt_server.setup()
        await run(prompt_server, address=args.listen, port=args.port, verbose=not args.dont_print_server)

    return asyncio_loop, prompt_server, start_all


async def _shutdown(prompt_server, main_task):
    """Stand-in only: close websockets, stop serving and run on_shutdown/on_cleanup."""
    main_task.cancel()
    try:
        await main_task
    except (asyncio.CancelledError, Exception):
        pass
    for ws in list(prompt_server.sockets.values()):
        try:
            await ws.close(code=aiohttp_ws_going_away, message=b"Server shutdown")
        except Exception:
            pass
    runner = getattr(prompt_server, "runner", None)
    if runner is not None:
        await runner.cleanup()
    if prompt_server.client_session is not None:
        await prompt_server.client_session.close()


try:
    from aiohttp import WSCloseCode
    aiohttp_ws_going_away = WSCloseCode.GOING_AWAY
except Exception:  # pragma: no cover
    aiohttp_ws_going_away = 1001


def run_comfyui_way(event_loop, start_all_func):
    """The end of ComfyUI 0.3.64's main.py: no signal handler, so SIGTERM kills
    the process where it stands (no on_shutdown, no atexit) and Ctrl-C raises
    KeyboardInterrupt out of the loop (no on_shutdown; atexit runs)."""
    try:
        x = start_all_func()
        app.logger.print_startup_warnings()
        event_loop.run_until_complete(x)
    except KeyboardInterrupt:
        logging.info("\nStopped server")
    cleanup_temp()


if __name__ == "__main__":
    logging.info("Python version: {}".format(sys.version))
    logging.info("ComfyUI version: {} (stand-in)".format(comfyui_version.__version__))

    event_loop, prompt_server, start_all_func = start_comfyui()
    if not args.graceful_signals:
        run_comfyui_way(event_loop, start_all_func)
        sys.exit(0)
    main_task = event_loop.create_task(start_all_func())
    stop_requested = asyncio.Event()

    def request_stop(signame):
        logging.info(f"\nReceived {signame}, shutting down")
        stop_requested.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            event_loop.add_signal_handler(sig, request_stop, sig.name)
        except (NotImplementedError, RuntimeError):  # e.g. Windows
            pass

    async def main():
        app.logger.print_startup_warnings()
        stopper = asyncio.ensure_future(stop_requested.wait())
        done, _ = await asyncio.wait({main_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if main_task in done and main_task.exception() is not None:
            stopper.cancel()
            raise main_task.exception()
        await _shutdown(prompt_server, main_task)
        stopper.cancel()

    exit_code = 0
    try:
        event_loop.run_until_complete(main())
        logging.info("\nStopped server")
    except KeyboardInterrupt:
        logging.info("\nStopped server")
    except OSError as e:  # e.g. port already in use
        logging.error(f"Could not start server: {e}")
        exit_code = 1
    cleanup_temp()
    sys.exit(exit_code)
