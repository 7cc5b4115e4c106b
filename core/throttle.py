"""Failed-attempt throttling per client address (login, key guessing).

An attempt is counted when it starts (``reserve``), before its body is read
or its password checked, and given back (``refund``) if it turns out not to
be a failure; so a burst of concurrent or slow attempts cannot all pass the
check while the first ones are still being evaluated.

This is one process's view. Processes sharing a database also count
attempts there (``repository.reserve_login_attempt``); when the database
says an address is spent, ``block`` remembers it here so that the next
attempts are refused without asking the database again.

Memory is bounded: at most ``max_clients`` addresses are tracked; the
oldest entry is dropped first, so a flood from many addresses cannot grow
the table without limit.
"""

from collections import OrderedDict


class AttemptThrottle:
    def __init__(self, attempts: int, window: float, max_clients: int = 10000):
        self.attempts = attempts
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, list] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()  # client -> refused until (another process said)

    def retry_after(self, client: str, now: float) -> int:
        """Seconds to wait before another attempt is allowed; 0 = go ahead."""
        until = self._blocked.get(client)
        if until is not None:
            if until > now:
                return max(1, int(until - now) + 1)
            del self._blocked[client]
        times = self._recent(client, now)
        if len(times) < self.attempts:
            return 0
        return max(1, int(times[0] + self.window - now) + 1)

    def reserve(self, client: str, now: float) -> int:
        """Count an attempt starting ``now`` as a failure: 0 when it may go
        ahead, else the seconds to wait (and nothing is counted)."""
        wait = self.retry_after(client, now)
        if not wait:
            self.failed(client, now)
        return wait

    def refund(self, client: str, when: float):
        """Give back the attempt reserved at ``when`` (it succeeded, or was never evaluated)."""
        times = self._failures.get(client)
        if times and when in times:
            times.remove(when)

    def block(self, client: str, until: float):
        self._blocked[client] = until
        self._blocked.move_to_end(client)
        while len(self._blocked) > self.max_clients:
            self._blocked.popitem(last=False)

    def failed(self, client: str, now: float):
        times = self._recent(client, now)
        times.append(now)
        self._failures[client] = times[-self.attempts:]
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def _recent(self, client: str, now: float) -> list:
        times = self._failures.get(client)
        if not times:
            return []
        return [when for when in times if when > now - self.window]

    def __len__(self):
        return len(self._failures)


class WorkSlots:
    """At most ``size`` expensive checks (bcrypt) at once in this process.

    ``take`` is synchronous, so a burst cannot overshoot; a caller that gets
    no slot is refused at once rather than queued (a queue would only move
    the CPU time later, and keep the connections open meanwhile).
    """

    def __init__(self, size: int):
        self.size = size
        self.busy = 0

    def take(self) -> bool:
        if self.busy >= self.size:
            return False
        self.busy += 1
        return True

    def give_back(self):
        self.busy -= 1
