"""Queued workflows (prompts) per principal: who queued what, how it ended.

The tracker is fed from the request path (a prompt accepted by /prompt) and
from a poll of ComfyUI's queue and history (how it ended, how long it ran).
Outcomes are drained in batches for storage, like usage.
"""

from collections import OrderedDict

QUEUED, COMPLETED, FAILED, INTERRUPTED = "queued", "completed", "failed", "interrupted"
OWNER_MEMORY = 20000  # recent prompt ids remembered for the attribution node


class JobTracker:
    def __init__(self):
        self.open: dict[str, tuple] = {}                 # prompt id -> (key pk, principal kind, queued at)
        self.owners: OrderedDict[str, tuple] = OrderedDict()  # prompt id -> (key pk, principal kind)
        # key pk -> its remembered prompt ids, in the order queued (a subset of
        # owners), so a key's history is read without walking everyone's.
        self.by_key: dict[int, OrderedDict] = {}
        self.waiting: dict[int, int] = {}                # key pk -> prompts queued or running
        self._pending: dict[str, dict] = {}              # prompt id -> row changes to write

    def owner(self, prompt_id: str):
        return self.owners.get(prompt_id)

    def is_taken(self, prompt_id: str) -> bool:
        return prompt_id in self.owners

    def owned_by(self, prompt_id: str, key_pk: int) -> bool:
        owner = self.owners.get(prompt_id)
        return owner is not None and owner[0] == key_pk

    def prompts_of(self, key_pk: int):
        """The key's remembered prompt ids, oldest queued first (an ordered
        mapping: iterate it, reverse it, test membership)."""
        return self.by_key.get(key_pk) or {}

    def queued(self, prompt_id: str, key_pk, kind: str, now: float):
        self.open[prompt_id] = (key_pk, kind, now)
        self.owners[prompt_id] = (key_pk, kind)
        while len(self.owners) > OWNER_MEMORY:
            self._forget(*self.owners.popitem(last=False))
        if key_pk is not None:
            self.by_key.setdefault(key_pk, OrderedDict())[prompt_id] = None
            self.waiting[key_pk] = self.waiting.get(key_pk, 0) + 1
        self._pending[prompt_id] = {"prompt_id": prompt_id, "key_pk": key_pk, "principal": kind,
                                    "queued_at": now, "outcome": QUEUED}

    def _forget(self, prompt_id: str, owner: tuple):
        own = self.by_key.get(owner[0])
        if own is not None:
            own.pop(prompt_id, None)
            if not own:
                del self.by_key[owner[0]]

    def waiting_of(self, key_pk: int) -> int:
        """Prompts of the key queued, running, or held while /prompt validates them."""
        return self.waiting.get(key_pk, 0)

    def hold(self, key_pk: int):
        """One more waiting prompt of the key, while /prompt handles it (so a burst cannot overshoot)."""
        self.waiting[key_pk] = self.waiting.get(key_pk, 0) + 1

    def release(self, key_pk: int):
        """The held prompt was handled: ``queued`` counts it from here, or it was refused."""
        self.waiting[key_pk] -= 1

    def finished(self, prompt_id: str, outcome: str, finished_at: float, seconds):
        entry = self.open.pop(prompt_id, None)
        if entry is None:
            return
        key_pk = entry[0]
        if key_pk is not None and self.waiting.get(key_pk, 0) > 0:
            self.waiting[key_pk] -= 1
        self._pending[prompt_id] = {"prompt_id": prompt_id, "key_pk": key_pk, "principal": entry[1],
                                    "queued_at": entry[2], "outcome": outcome,
                                    "finished_at": finished_at, "execution_seconds": seconds}

    def drain(self) -> list[dict]:
        pending, self._pending = self._pending, {}
        return list(pending.values())

    def restore(self, rows: list[dict]):
        for row in rows:
            # a newer change to the same prompt wins over the failed batch
            self._pending.setdefault(row["prompt_id"], row)

    def pending_rows_for(self, key_pk: int) -> list[dict]:
        return [row for row in self._pending.values() if row["key_pk"] == key_pk]


def outcome_from_history(item: dict):
    """(outcome, finished at, execution seconds) from a ComfyUI history item."""
    status = item.get("status") or {}
    messages = status.get("messages") or []
    started = ended = None
    outcome = COMPLETED if status.get("status_str") == "success" else FAILED
    for event, data in messages:
        stamp = data.get("timestamp") if isinstance(data, dict) else None
        if event == "execution_start":
            started = stamp
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            ended = stamp
            if event == "execution_interrupted":
                outcome = INTERRUPTED
    seconds = (ended - started) / 1000.0 if started is not None and ended is not None else None
    return outcome, (ended / 1000.0 if ended is not None else None), seconds


def summarize_jobs(rows) -> dict:
    """``jobs`` part of usage_stats from (outcome, execution seconds) rows."""
    counts = {QUEUED: 0, COMPLETED: 0, FAILED: 0, INTERRUPTED: 0}
    seconds = 0.0
    for outcome, execution_seconds in rows:
        counts[outcome] = counts.get(outcome, 0) + 1
        seconds += execution_seconds or 0.0
    return {
        "prompts_queued": sum(counts.values()),
        "prompts_waiting": counts[QUEUED],
        "prompts_completed": counts[COMPLETED],
        "prompts_failed": counts[FAILED],
        "prompts_interrupted": counts[INTERRUPTED],
        "execution_seconds": round(seconds, 3),
    }
