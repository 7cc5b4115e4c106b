"""Usage counters, aggregated in memory and drained in batches.

One cell per (key, UTC hour, route template, method); each holds
successes, failures and summed duration. ``last_used`` is tracked per key and
only ever moves forward.
"""

import datetime

HOUR = 3600


class UsageAggregator:
    __slots__ = ("_cells", "_last_used")

    def __init__(self):
        self._cells: dict[tuple, list] = {}
        self._last_used: dict[int, float] = {}

    def record(self, key_pk: int, route: str, method: str, ok: bool, duration: float, now: float):
        cell_key = (key_pk, int(now) // HOUR * HOUR, route, method)
        cell = self._cells.get(cell_key)
        if cell is None:
            cell = self._cells[cell_key] = [0, 0, 0.0]
        cell[0 if ok else 1] += 1
        cell[2] += duration
        if now > self._last_used.get(key_pk, 0.0):
            self._last_used[key_pk] = now

    def drain(self):
        """Take everything counted so far: (cells, last_used)."""
        cells, self._cells = self._cells, {}
        last_used, self._last_used = self._last_used, {}
        return cells, last_used

    def restore(self, cells: dict, last_used: dict):
        """Put back a batch whose write failed, merging with newer counts."""
        for cell_key, (ok, failed, duration) in cells.items():
            cell = self._cells.setdefault(cell_key, [0, 0, 0.0])
            cell[0] += ok
            cell[1] += failed
            cell[2] += duration
        for key_pk, when in last_used.items():
            if when > self._last_used.get(key_pk, 0.0):
                self._last_used[key_pk] = when

    def pending_last_used(self, key_pk: int) -> float:
        return self._last_used.get(key_pk, 0.0)

    def pending_for(self, key_pk: int):
        """Cells not yet written for one key, so reports include them."""
        return {k: v for k, v in self._cells.items() if k[0] == key_pk}


def summarize(rows, days: int, now: float) -> dict:
    """Build ``usage_stats`` from (hour, route, method, ok, failed, duration) rows."""
    since = (int(now) // 86400 - days + 1) * 86400
    per_day: dict[str, int] = {}
    endpoints: dict[tuple, list] = {}
    ok_total = failed_total = 0
    duration_total = 0.0

    for hour, route, method, ok, failed, duration in rows:
        if hour < since:
            continue
        day = datetime.datetime.fromtimestamp(hour, datetime.timezone.utc).date().isoformat()
        per_day[day] = per_day.get(day, 0) + ok + failed
        entry = endpoints.setdefault((method, route), [0, 0])
        entry[0] += ok
        entry[1] += failed
        ok_total += ok
        failed_total += failed
        duration_total += duration
    total = ok_total + failed_total
    return {
        "days": days,
        "since": since,
        "total_requests": total,
        "successful_requests": ok_total,
        "failed_requests": failed_total,
        "total_duration": round(duration_total, 6),
        "average_duration": round(duration_total / total, 6) if total else 0.0,
        "requests_per_day": dict(sorted(per_day.items())),
        "endpoints": [
            {"method": method, "route": route, "requests": ok + failed,
             "successful": ok, "failed": failed}
            for (method, route), (ok, failed) in sorted(
                endpoints.items(), key=lambda item: -(item[1][0] + item[1][1]))
        ],
    }
