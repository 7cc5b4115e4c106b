"""Hourly request limits, counted in fixed UTC-hour windows.

A window is the clock hour (UTC) a request falls in; ``X-RateLimit-Reset``
is the start of the next hour, as the earlier fork and its users expect.
The limiter is exact inside one process: ``hit`` is synchronous and runs on
the event loop, so a burst of concurrent requests cannot overshoot.

Counts are persisted by draining ``pending`` deltas in batches and seeded
again at start, so a restart does not hand out a fresh hour.
"""

WINDOW_SECONDS = 3600
REFUSED = -1  # what ``take`` returns when the hour's quota is spent


def window_start(now: float) -> int:
    return int(now) // WINDOW_SECONDS * WINDOW_SECONDS


class HourClock:
    """The current window, worked out once an hour rather than once a request.

    Timestamps are multi-digit integers in CPython, so ``window_start`` costs
    about as much as the rest of a limit check; the request path compares two
    floats instead and hands the same window object to ``take`` and to the
    usage counters, which then compare by identity.
    """

    __slots__ = ("start", "end", "window", "reset_at", "reset_text")

    def __init__(self):
        self.start = self.end = 0.0
        self.window = self.reset_at = 0
        self.reset_text = "0"

    def roll(self, now: float):
        """Move to the window ``now`` falls in (call when not start <= now < end)."""
        window = window_start(now)
        self.window, self.reset_at = window, window + WINDOW_SECONDS
        self.start, self.end = float(window), float(window + WINDOW_SECONDS)
        self.reset_text = str(self.reset_at)


class HourlyLimiter:
    # Per key: [window start, used, persisted]. The request path only bumps
    # ``used``; drain() turns the difference into deltas for the database.
    __slots__ = ("_used", "_pending")

    def __init__(self):
        self._used: dict[int, list] = {}
        self._pending: dict[tuple, int] = {}  # (key pk, window) -> delta of a finished or failed batch

    def take(self, key_pk: int, limit: int, window: int) -> int:
        """Count one request in ``window``: the requests left after it, or REFUSED."""
        state = self._used.get(key_pk)
        if state is None or state[0] != window:
            state = self._roll(key_pk, window)
        used = state[1]
        if used >= limit:
            return REFUSED
        state[1] = used + 1
        return limit - used - 1

    def hit(self, key_pk: int, limit: int, now: float):
        """Count one request. Returns (allowed, remaining, reset_at)."""
        window = window_start(now)
        remaining = self.take(key_pk, limit, window)
        return remaining != REFUSED, max(remaining, 0), window + WINDOW_SECONDS

    def _roll(self, key_pk: int, window: int) -> list:
        old = self._used.get(key_pk)
        if old is not None and old[1] != old[2]:
            self._add_pending(key_pk, old[0], old[1] - old[2])
        state = self._used[key_pk] = [window, 0, 0]
        return state

    def _add_pending(self, key_pk, window, delta):
        self._pending[(key_pk, window)] = self._pending.get((key_pk, window), 0) + delta

    def refund(self, key_pk: int, now: float):
        """Give back one hit (the request it was for did not happen)."""
        state = self._used.get(key_pk)
        if state is not None and state[0] == window_start(now) and state[1] > 0:
            state[1] -= 1

    def used(self, key_pk: int, now: float) -> int:
        state = self._used.get(key_pk)
        if state is None or state[0] != window_start(now):
            return 0
        return state[1]

    def unflushed(self, key_pk: int, window: int) -> int:
        """Requests of ``window`` counted here and not yet written to the database."""
        state = self._used.get(key_pk)
        here = state[1] - state[2] if state is not None and state[0] == window else 0
        return here + self._pending.get((key_pk, window), 0)

    def seed(self, key_pk: int, window: int, used: int):
        """Adopt a persisted count (at start)."""
        state = self._used.get(key_pk)
        if state is None or state[0] < window:
            self._used[key_pk] = [window, used, used]
        elif state[0] == window and used > state[2]:
            state[1] += used - state[2]
            state[2] = used

    def drain(self) -> dict:
        """Counts not yet persisted, as {(key pk, window): delta}."""
        pending, self._pending = self._pending, {}
        for key_pk, state in self._used.items():
            if state[1] != state[2]:
                pending[(key_pk, state[0])] = pending.get((key_pk, state[0]), 0) + state[1] - state[2]
                state[2] = state[1]
        return pending

    def restore(self, pending: dict):
        """Put back deltas whose write failed, so they are tried again."""
        for (key_pk, window), delta in pending.items():
            self._add_pending(key_pk, window, delta)

    def forget(self, key_pk: int):
        self._used.pop(key_pk, None)


class SharedQuota:
    """Hourly limits shared by several processes through the database.

    Each process claims quota from the database in batches and spends it
    locally, so the database is consulted once per batch, not per request.
    Batches shrink as the hour's quota runs out (an eighth of what is left,
    at most ``max_batch``), so quota stranded in a process that goes idle is
    small and the processes together admit at most L, and close to L when
    they all have demand.
    """

    NEED_MORE = None

    def __init__(self, max_batch: int = 50000):
        self.max_batch = max_batch
        # key pk -> [window, granted, used, claimed globally,
        #            the ``used`` count at which a quarter of the last grant is left]
        self._state: dict[int, list] = {}
        # Keys whose batch ran low on the last take: claim the next batch in
        # the background now, before requests have to wait for it. The caller
        # empties it; a plain list keeps the check on the request path cheap.
        self.running_low: list[int] = []

    def take(self, key_pk: int, limit: int, window: int):
        """Spend one request of ``window`` from this process's batch: the
        requests left in the hour (all processes together), REFUSED when the
        hour is spent everywhere, or NEED_MORE when a claim is due."""
        state = self._state.get(key_pk)
        if state is None or state[0] != window:
            return self.NEED_MORE
        used = state[2]
        if used < state[1]:
            # What the hour still allows, counting the other processes' claims
            # as spent. Only a limit lowered below what was claimed makes this
            # refuse a request this process holds quota for.
            left = limit - (state[3] - state[1]) - used
            if left <= 0:
                return REFUSED
            state[2] = used = used + 1
            if used == state[4] and state[3] < limit:
                self.running_low.append(key_pk)
            return left - 1
        if state[3] >= limit:
            return REFUSED
        return self.NEED_MORE

    def batch_size(self, key_pk: int, limit: int, now: float) -> int:
        state = self._state.get(key_pk)
        claimed = state[3] if state is not None and state[0] == window_start(now) else 0
        return max(1, min(self.max_batch, (limit - claimed) // 8))

    def grant(self, key_pk: int, window: int, granted: int, claimed_total: int):
        state = self._state.get(key_pk)
        if state is None or state[0] != window:
            state = self._state[key_pk] = [window, 0, 0, 0, 0]
        state[1] += granted
        # The latest total, not the largest seen: this process claims a key's
        # quota one batch at a time, so it is lower only when another process
        # gave quota back (at shutdown), which is then free again.
        state[3] = claimed_total
        state[4] = state[1] - (granted >> 2)

    def held(self, window: int) -> list[int]:
        """Keys this process has claimed quota of in ``window``."""
        return [key_pk for key_pk, state in self._state.items() if state[0] == window]

    def observe(self, key_pk: int, window: int, claimed_total: int):
        """Adopt the hour's claimed total read from the database, so what
        other processes claimed (or gave back) since this one's last claim
        shows in ``take``'s answer, and a hour seen as spent opens again
        when quota is given back."""
        state = self._state.get(key_pk)
        if state is not None and state[0] == window:
            state[3] = claimed_total

    def unspent_of(self, key_pk: int, window: int) -> int:
        """What this process claimed of ``window`` and has not spent."""
        state = self._state.get(key_pk)
        return state[1] - state[2] if state is not None and state[0] == window else 0

    def unspent(self, now: float) -> dict:
        """{(key pk, window): claimed but not spent} for this hour."""
        window = window_start(now)
        return {(key_pk, state[0]): state[1] - state[2] for key_pk, state in self._state.items()
                if state[0] == window and state[1] > state[2]}

    def give_back(self, now: float) -> dict:
        """``unspent``, to return to the database at shutdown; this process no
        longer spends it (a later request claims afresh)."""
        unspent = self.unspent(now)
        for key_pk, _ in unspent:
            state = self._state[key_pk]
            state[1] = state[2]
        return unspent

    def forget(self, key_pk: int):
        self._state.pop(key_pk, None)
