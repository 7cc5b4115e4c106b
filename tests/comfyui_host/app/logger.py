"""Log capture behind /internal/logs, modelled on ComfyUI's app/logger.py.

setup_logger() (called by main.py) replaces sys.stdout/sys.stderr with
wrappers that keep the last `capacity` writes in a deque and call flush
callbacks, and installs a root logging handler printing bare messages
(to stderr, or stdout for everything below ERROR with --log-stdout).
"""
import io
import logging
import sys
import threading
from collections import deque
from datetime import datetime

logs = None
stdout_interceptor = None
stderr_interceptor = None


class LogInterceptor(io.TextIOWrapper):
    def __init__(self, stream, *args, **kwargs):
        super().__init__(stream.buffer, *args, **kwargs, encoding=stream.encoding,
                         line_buffering=stream.line_buffering)
        self._lock = threading.Lock()
        self._flush_callbacks = []
        self._logs_since_flush = []

    def write(self, data):
        entry = {"t": datetime.now().isoformat(), "m": data}
        with self._lock:
            self._logs_since_flush.append(entry)
            # a carriage-return write replaces an unfinished last line (progress bars)
            if isinstance(data, str) and data.startswith("\r") and logs and not logs[-1]["m"].endswith("\n"):
                logs.pop()
            logs.append(entry)
        return super().write(data)

    def flush(self):
        super().flush()
        for callback in self._flush_callbacks:
            callback(self._logs_since_flush)
            self._logs_since_flush = []

    def on_flush(self, callback):
        self._flush_callbacks.append(callback)


def get_logs():
    return logs


def on_flush(callback):
    if stdout_interceptor is not None:
        stdout_interceptor.on_flush(callback)
    if stderr_interceptor is not None:
        stderr_interceptor.on_flush(callback)


def setup_logger(log_level: str = 'INFO', capacity: int = 300, use_stdout: bool = False):
    global logs, stdout_interceptor, stderr_interceptor
    if logs:
        return
    logs = deque(maxlen=capacity)
    stdout_interceptor = sys.stdout = LogInterceptor(sys.stdout)
    stderr_interceptor = sys.stderr = LogInterceptor(sys.stderr)

    logger = logging.getLogger()
    logger.setLevel(log_level)

    stream_handler = logging.StreamHandler()
    stream_handler.setFormatter(logging.Formatter("%(message)s"))
    if use_stdout:
        stream_handler.addFilter(lambda record: not record.levelno < logging.ERROR)
        stdout_handler = logging.StreamHandler(sys.stdout)
        stdout_handler.setFormatter(logging.Formatter("%(message)s"))
        stdout_handler.addFilter(lambda record: record.levelno < logging.ERROR)
        logger.addHandler(stdout_handler)
    logger.addHandler(stream_handler)


STARTUP_WARNINGS = []


def log_startup_warning(msg):
    logging.warning(msg)
    STARTUP_WARNINGS.append(msg)


def print_startup_warnings():
    for msg in STARTUP_WARNINGS:
        logging.warning(msg)
    STARTUP_WARNINGS.clear()
