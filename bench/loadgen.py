#!/usr/bin/env python3
"""The load generator and the burst client, each run as its own process.

    python3 bench/loadgen.py _loadgen --port P --path /api/features [--concurrency 32 ...]
    python3 bench/loadgen.py _burst --port P [--port Q ...] --path /api/features --n 200

Both print one JSON object on stdout. The request's extra header line (an
``Authorization: Bearer`` key) comes from the BENCH_HEADER environment
variable, so it never shows in a process listing. ``bench.py _loadgen`` and
``bench.py _burst`` run the same.
"""

import argparse
import asyncio
import json
import os
import sys
import time

from measure import percentile, proc_cpu_seconds, system_busy_seconds

PATH = os.path.abspath(__file__)


def build_request(path: str, port: int, header: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: application/json"]
    if header:
        lines.append(header)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(head: bytes):
    """(status, lower-cased header dict) of a response head."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return status, headers


class _LoadConnection(asyncio.Protocol):
    """One keep-alive connection, one request in flight (closed loop).

    A raw asyncio protocol rather than aiohttp's client: it costs a few
    microseconds a request, so one client core keeps a single-threaded
    aiohttp server saturated (aiohttp's client costs about as much as the
    server it measures, and would measure itself).
    """

    def __init__(self, run):
        self.run = run
        self.transport = None
        self.buffer = b""
        self.need = -1
        self.status = 0
        self.sent_at = 0.0
        self.finished = run.loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.fire()

    def fire(self):
        self.sent_at = time.perf_counter()
        self.transport.write(self.run.request)

    def data_received(self, data):
        buffer = self.buffer + data if self.buffer else data
        if self.need < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            head = buffer[:end]
            self.status = int(head[9:12])
            at = head.lower().find(b"\r\ncontent-length:")
            if at < 0:
                self.fail("response without Content-Length")
                return
            stop = head.find(b"\r\n", at + 2)
            self.need = end + 4 + int(head[at + 17: stop if stop > 0 else len(head)])
        if len(buffer) < self.need:
            self.buffer = buffer
            return
        if len(buffer) > self.need:
            self.fail("more bytes than one response")
            return
        self.buffer = b""
        self.need = -1
        now = time.perf_counter()
        run = self.run
        if run.phase == 1:
            run.completed += 1
            if self.sent_at >= run.measure_start:
                run.latencies.append(now - self.sent_at)
            run.statuses[self.status] = run.statuses.get(self.status, 0) + 1
        if run.phase < 2:
            self.fire()
        else:
            self.transport.close()

    def fail(self, why):
        self.run.errors.append(why)
        self.transport.close()

    def connection_lost(self, exc):
        if self.run.phase < 2 and not self.finished.done():
            self.run.errors.append(f"connection lost: {exc}")
        if not self.finished.done():
            self.finished.set_result(None)


class _LoadRun:
    def __init__(self, loop, request):
        self.loop = loop
        self.request = request
        self.phase = 0  # 0 warm-up, 1 measuring, 2 draining
        self.measure_start = 0.0
        self.completed = 0
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []


async def _loadgen(options) -> dict:
    loop = asyncio.get_running_loop()
    header = os.environ.get("BENCH_HEADER") or None
    run = _LoadRun(loop, build_request(options.path, options.port, header))
    connections = []
    for _ in range(options.concurrency):
        _, protocol = await loop.create_connection(lambda: _LoadConnection(run), "127.0.0.1", options.port)
        connections.append(protocol)
    await asyncio.sleep(options.warmup)
    snap = {}

    def snapshot(tag):
        snap[tag] = (time.perf_counter(), time.time(), time.process_time(),
                     proc_cpu_seconds(options.server_pid) if options.server_pid else 0.0,
                     system_busy_seconds())

    snapshot("start")
    run.measure_start = snap["start"][0]
    run.phase = 1
    await asyncio.sleep(options.duration)
    run.phase = 2
    snapshot("end")
    try:
        await asyncio.wait_for(asyncio.gather(*(c.finished for c in connections)), 10)
    except asyncio.TimeoutError:
        run.errors.append("responses still outstanding 10 s after the end")
    (p0, w0, c0, s0, b0), (p1, w1, c1, s1, b1) = snap["start"], snap["end"]
    seconds = p1 - p0
    latencies = sorted(run.latencies)
    server_cpu = s1 - s0
    client_cpu = c1 - c0
    return {
        "requests": run.completed,
        "seconds": seconds,
        "rps": run.completed / seconds,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p90_ms": percentile(latencies, 0.90) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1e3,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "errors": run.errors[:5],
        "error_count": len(run.errors),
        "client_cpu": client_cpu / seconds,            # cores
        "server_cpu": server_cpu / seconds,            # cores
        "server_us_per_request": server_cpu / run.completed * 1e6 if run.completed else float("nan"),
        "other_cpu": max(0.0, (b1 - b0) - server_cpu - client_cpu) / seconds,  # cores used by others
        "wall_start": w0,
        "wall_end": w1,
    }


async def _read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers = parse_head(head[:-4])
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


async def _burst(options) -> dict:
    """Open N connections first, then send one request on each at once."""
    header = os.environ.get("BENCH_HEADER") or None
    ports = options.port_list
    streams = []
    for start in range(0, options.n, 50):  # connect in slices: the listen backlog is finite
        streams += await asyncio.gather(*(asyncio.open_connection("127.0.0.1", ports[i % len(ports)])
                                          for i in range(start, min(options.n, start + 50))))
    requests = [build_request(options.path, port, header) for port in ports]
    for i, (_, writer) in enumerate(streams):
        writer.write(requests[i % len(ports)])
    results = await asyncio.gather(*(_read_response(reader) for reader, _ in streams), return_exceptions=True)
    for _, writer in streams:
        writer.close()
    statuses: dict[str, int] = {}
    per_port: dict[str, dict] = {}
    errors = []
    remaining = []
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            errors.append(repr(result))
            continue
        status, headers, _ = result
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        port_stats = per_port.setdefault(str(ports[i % len(ports)]), {})
        port_stats[str(status)] = port_stats.get(str(status), 0) + 1
        if "x-ratelimit-remaining" in headers:
            remaining.append(int(headers["x-ratelimit-remaining"]))
    return {"statuses": statuses, "per_port": per_port, "errors": errors[:5], "error_count": len(errors),
            "min_remaining": min(remaining) if remaining else None}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="loadgen.py _loadgen|_burst")
    parser.add_argument("mode", choices=("_loadgen", "_burst"))
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument("--n", type=int, default=200)
    options = parser.parse_args(argv)
    options.port_list = options.port
    options.port = options.port[0]
    result = asyncio.run(_loadgen(options) if options.mode == "_loadgen" else _burst(options))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
