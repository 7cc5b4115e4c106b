"""How queued prompts end, learned from ComfyUI's queue and history (polled
every second), and who queued a prompt (for the node that reports it)."""

from ..core.jobs import INTERRUPTED, outcome_from_history


class JobWatch:
    def __init__(self, jobs, keys, clock):
        self.jobs = jobs  # the JobTracker the prompt gate feeds
        self.keys = keys  # the KeyCache: a prompt's key record
        self.clock = clock
        self.prompt_queue = lambda: None  # set by install: ComfyUI's PromptQueue, once it exists
        self._misses: dict[str, int] = {}
        self.on_finished = lambda prompt_id, history_item: None  # set by the runtime: the files a prompt made

    async def poll_jobs(self):
        """Learn how open prompts ended, from ComfyUI's queue and history."""
        queue = self.prompt_queue()
        if queue is None or not self.jobs.open:
            return
        running, pending = queue.get_current_queue_volatile()
        in_queue = {item[1] for item in running} | {item[1] for item in pending}
        for prompt_id in list(self.jobs.open):
            if self._learn_if_finished(queue, prompt_id):
                self._misses.pop(prompt_id, None)
            elif prompt_id in in_queue:
                self._misses.pop(prompt_id, None)
            else:
                # Neither queued nor in history twice running: deleted from the
                # queue by a client, or its history was cleared.
                misses = self._misses.get(prompt_id, 0) + 1
                self._misses[prompt_id] = misses
                if misses >= 2:
                    self.jobs.finished(prompt_id, INTERRUPTED, self.clock(), None)
                    self._misses.pop(prompt_id, None)

    def _learn_if_finished(self, queue, prompt_id) -> bool:
        history = queue.get_history(prompt_id=prompt_id)
        item = history.get(prompt_id) if history else None
        if item is None or (item.get("status") or {}).get("completed") is None:
            return False
        outcome, finished_at, seconds = outcome_from_history(item)
        self.jobs.finished(prompt_id, outcome, finished_at or self.clock(), seconds)
        self.on_finished(prompt_id, item)
        return True

    def learn_finished_of(self, key_pk: int):
        """The key's prompts that finished since the last poll, now: a client that
        saw its prompt in /history asks for its files at once."""
        queue = self.prompt_queue()
        if queue is None:
            return
        for prompt_id, entry in list(self.jobs.open.items()):
            if entry[0] == key_pk:
                self._learn_if_finished(queue, prompt_id)

    def owner_of_prompt(self, prompt_id: str):
        """(key record or None, principal kind) of whoever queued a prompt."""
        owner = self.jobs.owner(prompt_id)
        if owner is None:
            return None, None
        key_pk, kind = owner
        return (self.keys.by_pk.get(key_pk) if key_pk is not None else None), kind
