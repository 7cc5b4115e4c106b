"""Failed-attempt throttling per client address (login, key guessing).

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

    def retry_after(self, client: str, now: float) -> int:
        """Seconds to wait before another attempt is allowed; 0 = go ahead."""
        times = self._recent(client, now)
        if len(times) < self.attempts:
            return 0
        return max(1, int(times[0] + self.window - now) + 1)

    def failed(self, client: str, now: float):
        times = self._recent(client, now)
        times.append(now)
        self._failures[client] = times[-self.attempts:]
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str):
        self._failures.pop(client, None)

    def _recent(self, client: str, now: float) -> list:
        times = self._failures.get(client)
        if not times:
            return []
        return [when for when in times if when > now - self.window]

    def __len__(self):
        return len(self._failures)
