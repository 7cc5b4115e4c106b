"""The database thread: every database call of the running package goes through it.

One dedicated thread (a single-worker executor): Peewee's connections are per
thread, SQLite has one writer anyway, and the event loop never waits on I/O.
Calls run in the order they were made.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import peewee

from ..storage import database as db_open

log = logging.getLogger("comfyui_api_auth")


class StorageUnavailable(RuntimeError):
    """A database call failed (disk full, read-only, unreachable): answer 503."""


class DatabaseThread:
    def __init__(self):
        self.database = None  # set by start, on the thread
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-auth-db")

    async def start(self, url: str, load):
        """Open the database at ``url`` on the thread, then run ``load(database)`` there."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._open, url, load)

    def _open(self, url, load):
        self.database = db_open.open_database(url)
        return load(self.database)

    async def run(self, function, *args, **kwargs):
        """``function(database, *args, **kwargs)`` on the thread; a database error is StorageUnavailable."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._on_thread, function, args, kwargs)
        except peewee.PeeweeException as error:
            log.error("[api-auth] database call %s failed: %s: %s", function.__name__, type(error).__name__, error)
            raise StorageUnavailable(db_open.mask_secrets(f"{type(error).__name__}: {error}")) from None

    async def call(self, function, *args):
        """Like ``run``, with the errors as raised (for the flush, which reports its own)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._on_thread, function, args, {})

    def run_sync(self, function, args, timeout: float):
        """``function(database, *args)`` after every call already queued, waiting at most
        ``timeout`` seconds (concurrent.futures.TimeoutError past it). Once the interpreter is exiting
        (atexit) the thread takes no new work: it runs here then."""
        try:
            done = self._executor.submit(self._on_thread, function, args, {})
        except RuntimeError:  # interpreter shutdown: no new work on the thread
            return self._on_thread(function, args, {})
        return done.result(timeout)

    def _on_thread(self, function, args, kwargs):
        try:
            return function(self.database, *args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError):
            # A dropped or broken connection: reconnect on the next call
            # instead of failing forever.
            try:
                self.database.close()
            except peewee.PeeweeException:
                pass
            raise
