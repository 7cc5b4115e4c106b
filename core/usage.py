"""Usage counters, aggregated in memory and drained in batches.

One cell per (key, UTC hour, route template, method); each holds
successes, failures and summed duration. ``last_used`` is tracked per key and
only ever moves forward.
"""

import datetime

MAX_ROUTES = 1024  # distinct (route, method) cells; past it, invented paths or methods share one
OVERFLOW_ROUTE = ("(other)", "(other)")
# A key's page loads, counted in cells of their own and never as requests:
# the ComfyUI page (and the sign-in page) itself, and the files it loads.
PAGE_LOADS = "(page loads)"
PAGE_FILES = "(page files)"
# Requests refused because the key's scopes do not reach the route: counted
# under "(refused) <route>", shown apart, never charged to the key's limit.
REFUSED_ROUTE_PREFIX = "(refused) "
ROUTE_MAX = 200  # the stored route column's width


class RouteCells(dict):
    """The open cells of one (route, method): {key pk: [ok, failed, duration, hour, last]}.

    The request path holds this dict for its route (see ``cells_for``), so
    counting a request is one lookup by an int, with no key tuple to build
    and hash.
    """

    __slots__ = ("route_method",)

    def __init__(self, route_method: tuple):
        super().__init__()
        self.route_method = route_method


class UsageAggregator:
    # Cells carry their hour and the latest request time; drain() turns them
    # into (key pk, hour, route, method) rows and a last-used time per key.
    __slots__ = ("_routes", "_closed", "_last_used")

    def __init__(self):
        self._routes: dict[tuple, RouteCells] = {}  # (route, method) -> its open cells
        self._closed: dict[tuple, list] = {}   # (key pk, hour, route, method) -> [ok, failed, duration]
        self._last_used: dict[int, float] = {}  # of cells already closed or given back

    def cells_for(self, route_method: tuple) -> RouteCells:
        """The cells of one (route, method), to pass to ``record``; the same dict for the process's life."""
        cells = self._routes.get(route_method)
        if cells is None:
            if len(self._routes) >= MAX_ROUTES and route_method != OVERFLOW_ROUTE:
                return self.cells_for(OVERFLOW_ROUTE)  # a flood of invented methods: counted together
            cells = self._routes[route_method] = RouteCells(route_method)
        return cells

    def record(self, cells: RouteCells, key_pk: int, ok: bool, duration: float, now: float, hour: int):
        """Count one request made at ``now``; ``hour`` is the UTC hour it falls in
        (``ratelimit.HourClock.window``, worked out once an hour by the caller)."""
        cell = cells.get(key_pk)
        if cell is None or cell[3] != hour:
            cell = self._open(cells, key_pk, hour)
        if ok:
            cell[0] += 1
        else:
            cell[1] += 1
        cell[2] += duration
        if now > cell[4]:
            cell[4] = now

    def _open(self, cells: RouteCells, key_pk: int, hour: int) -> list:
        old = cells.get(key_pk)
        if old is not None:  # the hour turned: keep the old hour's counts for the next drain
            self._merge(self._closed, (key_pk, old[3], *cells.route_method), old[:3])
            self._note_last_used(self._last_used, key_pk, old[4])
        cell = cells[key_pk] = [0, 0, 0.0, hour, 0.0]
        return cell

    @staticmethod
    def _merge(target, cell_key, counts):
        cell = target.setdefault(cell_key, [0, 0, 0.0])
        cell[0] += counts[0]
        cell[1] += counts[1]
        cell[2] += counts[2]

    @staticmethod
    def _note_last_used(target: dict, key_pk: int, when: float):
        if when > target.get(key_pk, 0.0):
            target[key_pk] = when

    def _open_cells(self):
        """(key pk, hour, route, method, cell) of every open cell."""
        for cells in self._routes.values():
            route, method = cells.route_method
            for key_pk, cell in cells.items():
                yield key_pk, cell[3], route, method, cell

    def drain(self):
        """Take everything counted so far: ({(key pk, hour, route, method): [ok, failed, duration]}, last_used)."""
        cells, self._closed = self._closed, {}
        last_used, self._last_used = self._last_used, {}
        for key_pk, hour, route, method, cell in self._open_cells():
            self._merge(cells, (key_pk, hour, route, method), cell[:3])
            self._note_last_used(last_used, key_pk, cell[4])
        for route_cells in self._routes.values():
            route_cells.clear()  # cleared in place: the request path holds these dicts
        return cells, last_used

    def restore(self, cells: dict, last_used: dict):
        """Put back a batch whose write failed, merging with newer counts."""
        for cell_key, counts in cells.items():
            self._merge(self._closed, cell_key, counts)
        for key_pk, when in last_used.items():
            self._note_last_used(self._last_used, key_pk, when)

    def pending_last_used(self) -> dict:
        """{key pk: latest request time} not yet drained (one pass, for a whole key list)."""
        latest = dict(self._last_used)
        for key_pk, _, _, _, cell in self._open_cells():
            self._note_last_used(latest, key_pk, cell[4])
        return latest

    def pending_for(self, key_pk: int):
        """Cells not yet written for one key, so reports include them."""
        cells = {k: list(v) for k, v in self._closed.items() if k[0] == key_pk}
        for pk, hour, route, method, cell in self._open_cells():
            if pk == key_pk:
                self._merge(cells, (pk, hour, route, method), cell[:3])
        return cells


def summarize(rows, days: int, now: float) -> dict:
    """Build ``usage_stats`` from (hour, route, method, ok, failed, duration) rows."""
    since = (int(now) // 86400 - days + 1) * 86400
    per_day: dict[str, int] = {}
    endpoints: dict[tuple, list] = {}
    pages = {PAGE_LOADS: 0, PAGE_FILES: 0}
    ok_total = failed_total = 0
    duration_total = 0.0

    refused: dict[tuple, int] = {}
    for hour, route, method, ok, failed, duration in rows:
        if hour < since:
            continue
        if route in pages:  # page loads are shown apart, never as requests
            pages[route] += ok + failed
            continue
        if route.startswith(REFUSED_ROUTE_PREFIX):  # refused for lack of scope: apart, not charged
            refused_key = (method, route[len(REFUSED_ROUTE_PREFIX):])
            refused[refused_key] = refused.get(refused_key, 0) + ok + failed
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
        "page_loads": pages[PAGE_LOADS],
        "page_files": pages[PAGE_FILES],
        "refused_requests": sum(refused.values()),
        "refused": [{"method": method, "route": route, "requests": count}
                    for (method, route), count in sorted(refused.items(), key=lambda item: -item[1])],
    }
