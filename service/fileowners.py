"""Who owns which file, in memory for the request path, kept in the database.

Loaded at start (so a restart does not open anyone's files); every change is
applied in memory at once and written by a flush that is started right away
(changes made while one runs are written by the next). A failed write stays
pending for the next flush: the periodic flush, or the last one at stop.

The owners are learnt from three places: uploads (the upload hook), the
``executed`` messages ComfyUI sends while a prompt runs (so a client can fetch
a node's image before the prompt ends), and the history of finished prompts
(the job watcher; prompts queued without a ``client_id`` get no messages).
"""

import asyncio
import logging

from ..core.file_owners import FileOwners, Folders, cached_nodes, node_outputs, output_refs
from ..storage import repository

log = logging.getLogger("comfyui_api_auth")


_folders_seen: dict = {}


def comfy_folders() -> Folders:
    """ComfyUI's input, output and temp folders as they are now (a node or an
    extension may move one), built once per set of folders."""
    import folder_paths  # ComfyUI's module (the stand-in's in tests)
    dirs = (folder_paths.get_input_directory(), folder_paths.get_output_directory(),
            folder_paths.get_temp_directory())
    found = _folders_seen.get(dirs)
    if found is None:
        if len(_folders_seen) > 8:
            _folders_seen.clear()
        found = _folders_seen[dirs] = Folders(*dirs)
    return found


class FileOwnerStore:
    def __init__(self, db, jobs, clock, folders=comfy_folders):
        self.db = db            # the DatabaseThread
        self.jobs = jobs        # the JobTracker: who queued a prompt
        self.clock = clock
        self.folders = folders  # () -> Folders
        self.owners = FileOwners()
        self._pending: list[tuple] = []
        self._last_id = 0  # the highest owner row read from the database
        self._writing: list[tuple] = []  # the changes a flush is writing now
        self._flushing: asyncio.Future | None = None

    def load(self, database):
        """On the db thread, at start."""
        rows, self._last_id = repository.file_owner_rows(database)
        self.owners.load(rows)

    async def refresh(self):
        """What other processes sharing the database recorded since the last look
        (a file's owners as they are now; a file this process has a change pending
        for waits for that change to be written and read back)."""
        changed, last_id = await self.db.run(repository.file_owners_changed_since, self._last_id)
        pending = {(kind, path) for _, kind, path, _ in self._pending + self._writing}
        for ref, owners in changed.items():
            if ref not in pending:
                self.owners.replace(ref, owners)
        self._last_id = max(self._last_id, last_id)

    # ---- changes -------------------------------------------------------------------------------

    def written(self, ref, key_pk):
        self._pending.append(self.owners.written(ref, key_pk))

    def shared(self, ref, key_pk):
        change = self.owners.shared(ref, key_pk)
        if change is not None:
            self._pending.append(change)

    def outputs_of(self, prompt_id, outputs, fresh: bool):
        """Files a prompt's node(s) produced (``fresh``: written now, not from the cache)."""
        owner = self.jobs.owner(prompt_id) if isinstance(prompt_id, str) else None
        if owner is None:
            return  # queued before this process started, or not through /prompt
        key_pk = owner[0]
        for ref in output_refs(self.folders(), outputs):
            if fresh:
                self.written(ref, key_pk)
            else:
                self.shared(ref, key_pk)
        self.flush_soon()

    def on_executed(self, prompt_id, output):
        """An ``executed`` message (on the loop, before it goes out). A node that
        came from the cache sends one too, so this only adds the owner; the
        history says which nodes ran (``on_finished``)."""
        self.outputs_of(prompt_id, output, fresh=False)

    def on_finished(self, prompt_id, history_item):
        """A finished prompt's history item (from the job watcher)."""
        if not isinstance(history_item, dict):
            return
        cached = cached_nodes(history_item)
        for node_id, outputs in node_outputs(history_item.get("outputs")):
            self.outputs_of(prompt_id, outputs, fresh=str(node_id) not in cached)

    # ---- writing -------------------------------------------------------------------------------

    def flush_soon(self):
        """Start a flush now unless one runs (it takes what is pending when it starts;
        the periodic flush takes what comes after)."""
        if self._pending and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.ensure_future(self._flush_quietly())

    async def persist(self):
        """Write what is pending now and wait for it (an upload answers once its owner is stored)."""
        while self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)
        self.flush_soon()
        if self._flushing is not None:
            await asyncio.shield(self._flushing)

    async def _flush_quietly(self):
        try:
            await self.flush()
        except Exception as error:  # noqa: BLE001 - stays pending; the periodic flush retries and reports
            log.warning("[api-auth] cannot record file owners yet (%s: %s); will retry", type(error).__name__, error)

    async def flush(self):
        changes, self._pending = self._pending, []
        if not changes:
            return
        self._writing = self._writing + changes
        try:
            await self.db.call(repository.write_file_owners, changes, self.clock())
        except Exception:
            self._pending[:0] = changes
            raise
        finally:
            written = set(changes)
            self._writing = [change for change in self._writing if change not in written]

    def flush_last(self, database):
        """On the db thread, at stop."""
        changes, self._pending = self._pending, []
        if changes:
            repository.write_file_owners(database, changes, self.clock())
