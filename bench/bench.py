#!/usr/bin/env python3
"""Request-path benchmark: what the API-key package costs a ComfyUI server.

    python3 bench/bench.py              # full run, about 4-5 minutes
    python3 bench/bench.py --quick      # CI smoke, about 20 seconds
    python3 bench/bench.py --profile 10 # + py-spy profile of the middleware
    python3 bench/bench.py --db postgresql://user:pass@host/postgres

One run starts the ComfyUI stand-in (tests/comfyui_host) several times, each
a separate process on its own free loopback port with its own temp
directories:

  A     plain ComfyUI, no package
  B     the package in require mode, a handful of keys
  B100k the package in require mode, 100,000 more keys in the database
  Bsh   like B with COMFYUI_API_AUTH_SHARED_LIMITS=on (quota claimed from the
        database in batches, as several processes sharing it need)

and drives the same cheap core route (GET /api/features by default) with a
closed-loop load generator in another process (32 keep-alive connections),
interleaving the servers for several rounds and reporting medians. Then:
burst exactness of the rate limit (in one process, and across two processes
sharing the database), and event-loop stalls measured inside the server by a
lag monitor injected with bench/loopmon/sitecustomize.py.

Standard library only (the package and the stand-in need aiohttp and peewee;
--db postgresql needs psycopg2). See bench/README.md.
"""

import argparse
import asyncio
import http.client
import importlib
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HOST_MAIN = os.path.join(REPO, "tests", "comfyui_host", "main.py")
LOOPMON_DIR = os.path.join(HERE, "loopmon")
PACKAGE = "comfyui_api_auth"
PACKAGE_DIR = REPO  # the custom node under test; --package changes it

TARGET_RATIO = 0.90
TARGET_P99_ADDED_MS = 1.0
RATIO_MOVE_TOLERANCE = 0.03  # "must not move materially": 100k keys vs few keys


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * (len(sorted_values) - 1)))))
    return sorted_values[index]


def median(values):
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all threads), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU-seconds all CPUs spent busy since boot (not idle, not iowait)."""
    with open("/proc/stat", encoding="ascii") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def machine_busy_cores(seconds=0.5) -> float:
    """CPU cores busy on the whole machine over a short interval."""
    before = system_busy_seconds()
    time.sleep(seconds)
    return (system_busy_seconds() - before) / seconds


def proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pin_to(cpus):
    """preexec_fn that pins a child (and every thread it starts) to cpus."""
    if not cpus:
        return None

    def pin():
        os.sched_setaffinity(0, cpus)
    return pin


def fmt(value, spec=".2f", width=8):
    if value is None or value != value:
        return "-".rjust(width)
    return format(value, spec).rjust(width)


def cpu_plan(pin: bool):
    """(server cpus, client cpus): server on one core, client on another."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None, "no sched_setaffinity here: processes are not pinned"
    if not pin:
        return None, None, "not pinned (--no-pin)"
    if len(available) < 2:
        return None, None, f"only {len(available)} CPU available: servers and load generator share it"
    server, client = {available[0]}, {available[1]}
    return server, client, (f"servers pinned to CPU {available[0]}, load generator to CPU {available[1]}"
                            + (f" ({len(available) - 2} more CPUs left idle)" if len(available) > 2 else ""))


# ---------------------------------------------------------------------------
# load generator (runs in its own process: `bench.py _loadgen ...`)
# ---------------------------------------------------------------------------

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


def child_main(argv) -> int:
    parser = argparse.ArgumentParser(prog="bench.py _loadgen|_burst")
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


# ---------------------------------------------------------------------------
# the package's storage layer, used to fill databases
# ---------------------------------------------------------------------------

def load_package():
    """Import the repository as a package, the way ComfyUI (and tests/conftest.py) does."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, os.path.join(PACKAGE_DIR, "__init__.py"), submodule_search_locations=[PACKAGE_DIR])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def package_module(name):
    load_package()
    return importlib.import_module(f"{PACKAGE}.{name}")


def open_db(url):
    database_mod = package_module("storage.database")
    migrations = package_module("storage.migrations")
    database = database_mod.open_database(url)
    migrations.ensure_ready(database)
    return database


def create_keys(url, keys) -> dict:
    """Create real keys through storage.repository.create_key; returns name -> plaintext."""
    key_format = package_module("auth.keys")
    repository = package_module("storage.repository")
    database = open_db(url)
    created = {}
    try:
        for name, rate_limit in keys:
            plaintext = key_format.generate_key()
            repository.create_key(database, key_id=key_format.generate_key_id(),
                                  key_hash=key_format.hash_key(plaintext),
                                  prefix=key_format.display_prefix(plaintext), name=name,
                                  rate_limit=rate_limit, metadata={"bench": True}, scopes=[], now=time.time())
            created[name] = plaintext
    finally:
        database.close()
    return created


def add_filler_keys(url, count, name_prefix="filler", with_revision_per_key=False) -> float:
    """Insert `count` more keys (never presented) through the package's models,
    in one write transaction. Returns seconds taken.

    Bulk: ApiKey.insert_many in chunks, all rows under one new revision (one
    revision bump, as one transaction that changes many keys would do).
    Per key (with_revision_per_key): repository.create_key for each, each
    with its own revision, as a script calling the CLI or API would.
    """
    models = package_module("storage.models")
    repository = package_module("storage.repository")
    key_format = package_module("auth.keys")
    database = open_db(url)
    started = time.perf_counter()
    try:
        with repository._write_transaction(database):
            now = time.time()
            if with_revision_per_key:
                for i in range(count):
                    plaintext = key_format.generate_key()
                    repository.create_key(database, key_id=key_format.generate_key_id(),
                                          key_hash=key_format.hash_key(plaintext),
                                          prefix=key_format.display_prefix(plaintext),
                                          name=f"{name_prefix}-{i}", rate_limit=100, metadata={},
                                          scopes=[], now=now)
            else:
                revision = repository._next_revision()
                rows = []
                for i in range(count):
                    secret = secrets.token_bytes(32)
                    rows.append({
                        "key_id": secrets.token_hex(8), "key_hash": key_format.hash_key(secret.hex()),
                        "prefix": "comfy_" + secret.hex()[:4], "name": f"{name_prefix}-{i}",
                        "rate_limit": 100, "is_active": True, "metadata": "{}", "scopes": "",
                        "created_at": now, "updated_at": now, "last_used": None, "deleted_at": None,
                        "revision": revision,
                    })
                    if len(rows) == 1000:
                        models.ApiKey.insert_many(rows).execute()
                        rows = []
                if rows:
                    models.ApiKey.insert_many(rows).execute()
    finally:
        database.close()
    return time.perf_counter() - started


def count_keys(url) -> int:
    models = package_module("storage.models")
    database = open_db(url)
    try:
        return models.ApiKey.select().where(models.ApiKey.deleted_at.is_null()).count()
    finally:
        database.close()


def postgres_database_url(url: str, name: str) -> str:
    """The same PostgreSQL server and credentials, another database."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def postgres_execute(url: str, sql: str):
    """One statement outside a transaction (CREATE/DROP DATABASE need that)."""
    import psycopg2  # only with --db postgresql://...

    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


# ---------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------

class Server:
    """One ComfyUI stand-in process."""

    def __init__(self, label, workdir, *, package, env=None, cpus=None, trace=False, db_url=None, wrapper=None):
        self.label = label
        self.wrapper = list(wrapper or [])  # a command to run the server under (valgrind); no lag monitor then
        self.workdir = workdir
        self.package = package
        self.env = dict(env or {})
        self.cpus = cpus
        self.trace = trace
        self.db_url = db_url
        self.port = None
        self.process = None
        self._log = None
        self.startup_seconds = float("nan")
        self.user_dir = os.path.join(workdir, "user")
        self.loopmon_path = os.path.join(workdir, "loopmon.txt")
        self.log_path = os.path.join(workdir, "server.log")
        for folder in ("user", "output", "input"):
            os.makedirs(os.path.join(workdir, folder), exist_ok=True)

    @property
    def sqlite_url(self):
        return "sqlite:///" + os.path.join(self.user_dir, "__api_auth", "auth.db")

    @property
    def url(self):
        return self.db_url or self.sqlite_url

    def start(self, probe_path, timeout=180):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_API_AUTH", "BENCH_"))}
        env["PYTHONUNBUFFERED"] = "1"
        if not self.wrapper:  # the lag monitor's timer would be counted as the server's work
            env["PYTHONPATH"] = LOOPMON_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            env["BENCH_LOOPMON_OUT"] = self.loopmon_path
        if self.trace:
            env["BENCH_LOOPMON_TRACE"] = "1"
        if self.package:
            env["COMFYUI_API_AUTH"] = "require"
            if self.db_url:
                env["COMFYUI_API_AUTH_DB"] = self.db_url
        env.update(self.env)
        command = self.wrapper + [sys.executable, HOST_MAIN, "--listen", "127.0.0.1", "--port", str(self.port),
                   "--user-directory", self.user_dir,
                   "--output-directory", os.path.join(self.workdir, "output"),
                   "--input-directory", os.path.join(self.workdir, "input")]
        if self.package:
            command += ["--custom-node", PACKAGE_DIR]
        self._log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                        env=env, start_new_session=True, preexec_fn=pin_to(self.cpus))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label}: server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                status, _, _ = self.get(probe_path, timeout=2)
                if status != 503:  # 503 = the package is still opening its database
                    self.startup_seconds = time.perf_counter() - started
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.label}: server did not start within {timeout} s:\n{self.log()[-3000:]}")

    def get(self, path, headers=None, timeout=10):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def stop(self, timeout=20):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def pid(self):
        return self.process.pid

    def lag_samples(self, wall_start=None, wall_end=None, wait=True):
        """Loop-monitor records inside a time window: (samples, slow callbacks, GC pauses).

        samples: (lag, loop thread cpu, process cpu) per 5 ms wake-up;
        slow callbacks: (wall seconds, loop cpu seconds, name, when);
        GC pauses: (seconds, generation, when).
        """
        if wait:
            time.sleep(1.1)  # the monitor appends once a second
        samples, slow, pauses = [], [], []
        try:
            with open(self.loopmon_path, encoding="utf-8") as handle:
                for line in handle:
                    parts = line.rstrip("\n").split(" ", 4)
                    try:
                        when = float(parts[0])
                        if (wall_start is not None and when < wall_start) or (wall_end is not None and when > wall_end):
                            continue
                        if parts[1] == "slow":
                            slow.append((float(parts[2]), float(parts[3]), parts[4], when))
                        elif parts[1] == "gc":
                            pauses.append((float(parts[2]), parts[3], when))
                        else:
                            samples.append((float(parts[1]), float(parts[2]), float(parts[3])))
                    except (ValueError, IndexError):
                        continue  # a line cut short by a kill
        except OSError:
            pass
        return samples, slow, pauses


def lag_stats(samples):
    """Max and p99 lag; the worst lag split into its causes."""
    if not samples:
        return {"samples": 0, "max_ms": float("nan"), "p99_ms": float("nan"), "own_max_ms": float("nan"),
                "worst": None}
    lags = sorted(sample[0] for sample in samples)
    worst = max(samples, key=lambda sample: sample[0])
    return {
        "samples": len(samples),
        "max_ms": lags[-1] * 1e3,
        "p99_ms": percentile(lags, 0.99) * 1e3,
        # lag the server's own CPU use can explain (its loop thread or its other threads)
        "own_max_ms": max(min(lag, process_cpu) for lag, _, process_cpu in samples) * 1e3,
        "worst": worst_cause(worst),
    }


def worst_cause(sample):
    lag, loop_cpu, process_cpu = sample
    other_threads = max(0.0, process_cpu - loop_cpu)
    # The interval was 5 ms + lag long; what used it?
    if loop_cpu >= 0.6 * lag:
        cause = "busy"   # the loop thread itself was working
    elif other_threads >= 0.5 * lag:
        cause = "GIL"    # another thread of the server (the database thread) held the GIL
    else:
        cause = "OS"     # the process was not scheduled: other programs had the CPU
    return {"lag_ms": lag * 1e3, "loop_cpu_ms": loop_cpu * 1e3, "other_threads_ms": other_threads * 1e3,
            "cause": cause}


# ---------------------------------------------------------------------------
# profile (py-spy, optional)
# ---------------------------------------------------------------------------

def package_frame(filename: str) -> bool:
    if not os.path.isabs(filename):  # <frozen abc>, <string> (code made by exec, e.g. dataclass __init__)
        return False
    return (filename.startswith(PACKAGE_DIR + os.sep)
            and not filename.startswith(os.path.join(PACKAGE_DIR, "tests") + os.sep)
            and not filename.startswith(os.path.join(PACKAGE_DIR, "bench") + os.sep))


def host_frame(filename: str) -> bool:
    return os.path.isabs(filename) and filename.startswith(os.path.dirname(HOST_MAIN) + os.sep)


def analyze_profile(raw_path):
    """Samples attributable to the package: the deepest package frame, unless
    the stand-in's own code (the downstream handler) runs below it."""
    total = 0
    by_function, by_line = {}, {}
    attributable = 0
    with open(raw_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            try:
                count = int(count)
            except ValueError:
                continue
            total += count
            frames = []
            for frame in stack.split(";"):
                name, _, where = frame.rpartition(" (")
                filename, _, lineno = where.rstrip(")").rpartition(":")
                frames.append((name, filename, lineno))
            deepest = None
            for index, (_, filename, _) in enumerate(frames):
                if package_frame(filename):
                    deepest = index
            if deepest is None or any(host_frame(f) for _, f, _ in frames[deepest + 1:]):
                continue
            attributable += count
            name, filename, lineno = frames[deepest]
            short = os.path.relpath(filename, PACKAGE_DIR)
            by_function[f"{short}: {name}"] = by_function.get(f"{short}: {name}", 0) + count
            by_line[f"{short}:{lineno} ({name})"] = by_line.get(f"{short}:{lineno} ({name})", 0) + count
    return total, attributable, by_function, by_line


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------

SERVER_TITLES = {
    "A0": "A0    no package, no key sent",
    "A": "A     no package, same requests",
    "B": "B     require",
    "B100k": "B100k require, +{keys:,} keys",
    "Bsh": "Bsh   require, shared limits",
}


class Bench:
    def __init__(self, options):
        self.options = options
        self.broken: list[str] = []
        self.results: dict = {"runs": {}, "low_runs": {}}
        self.server_cpus, self.client_cpus, self.pin_note = cpu_plan(not options.no_pin)
        self.tmp = tempfile.mkdtemp(prefix="comfyui-api-auth-bench-")
        self.servers: dict[str, Server] = {}
        self.extra_servers: list[Server] = []
        self.keys: dict[str, dict] = {}
        self.pg_databases: list[str] = []
        self.labels = ["A", "B", "B100k"] + ([] if options.no_shared else ["Bsh"])
        # Loads driven in each round: A0 is server A again, without the Authorization header.
        self.load_labels = ["A0"] + self.labels

    # -- output --

    def say(self, text=""):
        print(text, flush=True)

    def note_broken(self, what):
        self.broken.append(what)
        self.say(f"  !! BROKEN: {what}")

    def title(self, label):
        return SERVER_TITLES[label].format(keys=self.options.keys)

    # -- machine --

    def describe_machine(self):
        cpu_model = "unknown"
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("model name"):
                        cpu_model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        try:
            import aiohttp
            aiohttp_version = aiohttp.__version__
            from aiohttp import http_parser
            parser = "C" if http_parser.HttpRequestParser.__module__.endswith("_http_parser") else "pure Python"
        except ImportError:
            aiohttp_version, parser = "not installed", "?"
        try:
            import peewee
            peewee_version = peewee.__version__
        except ImportError:
            peewee_version = "not installed"
        commit = "?"
        try:
            commit = subprocess.run(["git", "-C", PACKAGE_DIR, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip() or "?"
            dirty = subprocess.run(["git", "-C", PACKAGE_DIR, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            if dirty:
                commit += " + uncommitted changes"
        except (OSError, subprocess.SubprocessError):
            pass
        with open("/proc/loadavg", encoding="ascii") as handle:
            loadavg = " ".join(handle.read().split()[:3])
        self.say("== Machine ==")
        self.say(f"CPU:        {cpu_model}")
        self.say(f"cores:      {os.cpu_count()} online, {len(os.sched_getaffinity(0))} usable by this process")
        self.say(f"pinning:    {self.pin_note}")
        self.say(f"OS:         {platform.system()} {platform.release()} ({platform.machine()})")
        self.say(f"Python:     {platform.python_version()} ({platform.python_implementation()}) {sys.executable}")
        self.say(f"aiohttp:    {aiohttp_version} (HTTP parser: {parser});  peewee: {peewee_version}")
        self.say(f"package:    {PACKAGE_DIR} at {commit}")
        self.say(f"load avg:   {loadavg} (at start; other work on the machine adds noise)")
        o = self.options
        self.say(f"settings:   route GET {o.path}; {o.concurrency} connections, keep-alive, closed loop; "
                 f"{o.rounds} round(s) x ({o.warmup:g} s warm-up + {o.duration:g} s measured) per server"
                 + (f" + {o.low_duration:g} s at 1 connection" if o.low_duration > 0 else "") + "; "
                 f"DB {'(--db) ' + self.describe_url(o.db) if o.db else 'SQLite (the default file)'}"
                 + (f"; before each run, wait up to {o.quiet_wait:g} s for <= {o.quiet_threshold:g} busy cores"
                    if o.quiet_wait > 0 else ""))
        self.results["machine"] = {"cpu": cpu_model, "cores": os.cpu_count(), "python": platform.python_version(),
                                   "aiohttp": aiohttp_version, "commit": commit, "pinning": self.pin_note,
                                   "loadavg": loadavg}

    @staticmethod
    def describe_url(url):
        try:
            return package_module("storage.database").describe(url)
        except Exception:  # noqa: BLE001
            return "<url>"

    # -- setup --

    def db_url_for(self, label):
        """None (SQLite in the server's user dir) or a fresh PostgreSQL database of our own."""
        if not self.options.db:
            return None
        name = f"comfy_bench_{label.lower()}_{os.getpid()}"
        postgres_execute(self.options.db, f'CREATE DATABASE "{name}"')
        self.pg_databases.append(name)
        return postgres_database_url(self.options.db, name)

    def new_server(self, label, **kwargs):
        return Server(label, os.path.join(self.tmp, label), cpus=self.server_cpus, **kwargs)

    def setup(self):
        o = self.options
        self.say("\n== Setup ==")
        for label in self.labels:
            if label == "A":
                server = self.new_server("A", package=False)
            else:
                env = {"COMFYUI_API_AUTH_SHARED_LIMITS": "on"} if label == "Bsh" else {}
                server = self.new_server(label, package=True, db_url=self.db_url_for(label), env=env)
                self.keys[label] = create_keys(server.url, [
                    ("bench", 1_000_000_000), ("burst", o.burst_limit), ("burst-shared", o.burst_limit),
                    ("stall", 1_000_000_000)])
            self.servers[label] = server
        b100k = self.servers["B100k"]
        filled = add_filler_keys(b100k.url, o.keys)
        self.say(f"B100k database: {o.keys:,} extra keys inserted through the package's models in {filled:.1f} s "
                 f"({count_keys(b100k.url):,} live keys); the others: 4 keys each (bench, burst, burst-shared, stall)")
        for label in self.labels:
            server = self.servers[label]
            server.start(o.path)
            self.say(f"{label:6} pid {server.pid:>7}  port {server.port:>5}  ready in {server.startup_seconds:5.2f} s"
                     f"  RSS {proc_rss_mb(server.pid):6.1f} MB  {self.title(label)[6:]}")
        self.results["startup_seconds"] = {label: self.servers[label].startup_seconds for label in self.labels}
        self.results["rss_mb"] = {label: proc_rss_mb(self.servers[label].pid) for label in self.labels}
        # sanity: same route, same answer; the package refuses without a key
        status, _, body_a = self.servers["A"].get(o.path)
        if status != 200:
            self.note_broken(f"A answers GET {o.path} with {status}")
        for label in self.labels[1:]:
            server = self.servers[label]
            status, _, _ = server.get(o.path)
            if status != 401:
                self.note_broken(f"{label} without a key answers {status}, expected 401")
            status, headers, body = server.get(o.path, {"Authorization": "Bearer " + self.keys[label]["bench"]})
            if status != 200 or body != body_a or "X-RateLimit-Remaining" not in headers:
                self.note_broken(f"{label} with a key answers {status} (body same as A: {body == body_a})")
        self.say(f"check: A GET {o.path} -> 200; every package server -> 401 without a key, "
                 "200 + X-RateLimit-* and the same body with one")

    # -- load --

    def loadgen(self, server, concurrency, warmup, duration, header=None):
        command = [sys.executable, os.path.abspath(__file__), "_loadgen", "--port", str(server.port),
                   "--path", self.options.path, "--concurrency", str(concurrency), "--warmup", str(warmup),
                   "--duration", str(duration), "--server-pid", str(server.pid)]
        env = dict(os.environ)
        env.pop("BENCH_HEADER", None)
        if header:
            env["BENCH_HEADER"] = header
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=warmup + duration + 60,
                              preexec_fn=pin_to(self.client_cpus))
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed against {server.label}:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)

    def wait_for_quiet(self) -> float:
        """Wait (up to --quiet-wait seconds) until other programs leave the CPUs alone."""
        o = self.options
        if o.quiet_wait <= 0:
            return 0.0
        started = time.perf_counter()
        while machine_busy_cores(0.5) > o.quiet_threshold and time.perf_counter() - started < o.quiet_wait:
            pass
        waited = time.perf_counter() - started
        self.results["waited_for_quiet"] = self.results.get("waited_for_quiet", 0.0) + waited
        return waited

    def server_of(self, label):
        return self.servers["A" if label == "A0" else label]

    def header_for(self, server, name="bench", label=None):
        """The request's Authorization header. Plain ComfyUI (A) gets the very
        request B gets, a key it ignores included, so that the ratio is the
        package's cost and not the cost of a longer request; A0 gets none."""
        if server.package:
            return f"Authorization: Bearer {self.keys[server.label][name]}"
        return None if label == "A0" else f"Authorization: Bearer {self.keys['B'][name]}"

    def check_run(self, label, result):
        bad = {k: v for k, v in result["statuses"].items() if k != "200"}
        if bad or result["error_count"]:
            self.note_broken(f"{label}: statuses {result['statuses']}, errors {result['errors']}")

    def run_line(self, round_index, label, result, note=""):
        self.say(f"{round_index + 1:>5} {label:6} {result['rps']:8.0f} {fmt(result['p50_ms'])} "
                 f"{fmt(result['p90_ms'])} {fmt(result['p99_ms'])} {fmt(result['max_ms'])} "
                 f"{fmt(result['server_us_per_request'], '.1f', 9)} {fmt(result['server_cpu'], '.2f', 7)} "
                 f"{fmt(result['client_cpu'], '.2f', 7)} {fmt(result['other_cpu'], '.2f', 7)}{note}")

    def throughput(self):
        o = self.options
        labels = self.load_labels
        self.say(f"\n== Throughput: {o.concurrency} connections, GET {o.path}, interleaved rounds ==")
        self.say("(srv us/req = server process CPU time per request, all threads, from /proc; cpu columns in cores: "
                 "server, load generator, everything else on the machine)")
        self.say("round server    req/s   p50 ms   p90 ms   p99 ms   max ms srv us/req srv cpu  client  others")
        for round_index in range(o.rounds):
            shift = round_index % len(labels)
            order = labels[shift:] + labels[:shift]
            for label in order:
                server = self.server_of(label)
                waited = self.wait_for_quiet()
                result = self.loadgen(server, o.concurrency, o.warmup, o.duration, self.header_for(server, label=label))
                result["waited_for_quiet"] = waited
                result["round"] = round_index
                self.check_run(label, result)
                self.results["runs"].setdefault(label, []).append(result)
                notes = []
                if waited >= 1:
                    notes.append(f"waited {waited:.0f} s for quiet")
                if result["other_cpu"] > o.quiet_threshold:
                    notes.append("others busy")
                if result["client_cpu"] > 0.90:
                    notes.append("load generator > 90% busy")
                self.run_line(round_index, label, result, ("  (" + "; ".join(notes) + ")") if notes else "")
            if o.low_duration > 0:
                for label in order:
                    server = self.server_of(label)
                    self.wait_for_quiet()
                    result = self.loadgen(server, 1, min(o.warmup, 0.5), o.low_duration,
                                          self.header_for(server, label=label))
                    self.check_run(label, result)
                    self.results["low_runs"].setdefault(label, []).append(result)
                    self.run_line(round_index, label, result, "  1 connection (unloaded latency)")

        # The monitors append once a second: read every window again once they have.
        time.sleep(1.1)
        for label, runs in self.results["runs"].items():
            for result in runs:
                samples, _, pauses = self.server_of(label).lag_samples(result["wall_start"], result["wall_end"],
                                                                       wait=False)
                result["lag"] = lag_stats(samples)
                result["gc_max_ms"] = max((p[0] for p in pauses), default=0.0) * 1e3
        self.say("loop lag during the measured windows, per round, max/p99 ms (longest GC pause, ms):")
        for label, runs in self.results["runs"].items():
            self.say(f"  {label:6} " + "   ".join(f"{r['lag']['max_ms']:5.2f}/{r['lag']['p99_ms']:5.2f} ({r['gc_max_ms']:.1f})"
                                            for r in runs))

    @staticmethod
    def summarize_runs(runs):
        return {
            "rps": median([r["rps"] for r in runs]),
            "p50_ms": median([r["p50_ms"] for r in runs]),
            "p99_ms": median([r["p99_ms"] for r in runs]),
            "us_per_req": median([r["server_us_per_request"] for r in runs]),
            "lag_max_ms": median([r["lag"]["max_ms"] for r in runs if "lag" in r]),  # median of the runs' maxima
            "gc_max_ms": max((r.get("gc_max_ms", 0.0) for r in runs), default=float("nan")),
            "client_cpu": max(r["client_cpu"] for r in runs),
            "server_cpu": median([r["server_cpu"] for r in runs]),
        }

    # -- bursts --

    def burst(self, servers, key_name, n):
        # Stay clear of an hour boundary: the window (and so the quota) resets there.
        to_next_hour = 3600 - time.time() % 3600
        if to_next_hour < 5:
            time.sleep(to_next_hour + 1)
        command = [sys.executable, os.path.abspath(__file__), "_burst", "--path", self.options.path, "--n", str(n)]
        for server in servers:
            command += ["--port", str(server.port)]
        env = dict(os.environ)
        env["BENCH_HEADER"] = f"Authorization: Bearer {self.keys[servers[0].label][key_name]}"
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                              preexec_fn=pin_to(self.client_cpus))
        if done.returncode != 0:
            raise RuntimeError(f"burst client failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)

    def record_burst(self, name, title, result):
        o = self.options
        ok, limited = result["statuses"].get("200", 0), result["statuses"].get("429", 0)
        exact = ok == min(o.burst_limit, o.burst_n) and limited == o.burst_n - ok and not result["error_count"]
        self.results.setdefault("bursts", {})[name] = {**result, "exact": exact, "title": title}
        verdict = "PASS (exactly L succeed)" if exact else f"MISS ({ok - o.burst_limit:+d} against L)"
        self.say(f"{title:58} 200 x {ok:3}, 429 x {limited:3}"
                 + (f", other {result['statuses']}" if ok + limited != o.burst_n else "") + f"  -> {verdict}")
        if len(result["per_port"]) > 1:
            self.say("      per process: " + ";  ".join(
                f"port {port}: " + ", ".join(f"{k} x {v}" for k, v in sorted(stats.items()))
                for port, stats in result["per_port"].items()))
        if result["error_count"] or ok + limited != o.burst_n:
            self.note_broken(f"burst {name}: {result['statuses']} {result['errors']}")

    def bursts(self):
        o = self.options
        self.say(f"\n== Burst exactness: a fresh key with limit L={o.burst_limit}/hour, N={o.burst_n} requests "
                 "sent at once on N open connections ==")
        for label in self.labels[1:]:
            self.record_burst(label, f"{label}: one process", self.burst([self.servers[label]], "burst", o.burst_n))
        # Scale-out: a second ComfyUI process on the same database, the burst split between them.
        for label in ("B", "Bsh"):
            if label not in self.servers:
                continue
            first = self.servers[label]
            second = Server(label + "-2", os.path.join(self.tmp, label + "-2"), package=True, cpus=self.server_cpus,
                            db_url=first.url, env=first.env)
            second.start(o.path)
            self.keys[second.label] = self.keys[label]
            try:
                result = self.burst([first, second], "burst-shared", o.burst_n)
            finally:
                second.stop()
            settings = "shared limits on" if label == "Bsh" else "default settings"
            self.record_burst(f"{label}_two_processes",
                              f"{label} + {second.label}: two processes, one database, {settings}", result)

    # -- stalls --

    def stalls(self):
        o = self.options
        self.say("\n== Event-loop stalls: lag monitor inside the server (a 5 ms timer; how late it fires) ==")
        old = self.servers.pop("B100k")
        old.stop()
        server = Server("B100k-trace", old.workdir, package=True, cpus=self.server_cpus, trace=True,
                        db_url=old.db_url)
        server.loopmon_path = os.path.join(old.workdir, "loopmon-trace.txt")
        self.keys[server.label] = self.keys["B100k"]
        server.start(o.path)
        self.extra_servers.append(server)
        self.say(f"B100k restarted with callback tracing (callbacks >= 2 ms are named): ready in "
                 f"{server.startup_seconds:.2f} s with {count_keys(server.url):,} keys; "
                 f"RSS {proc_rss_mb(server.pid):.1f} MB")
        windows = []

        def window(name, seconds, action=None):
            start = time.time()
            if action:
                action()
            remaining = seconds - (time.time() - start)
            if remaining > 0:
                time.sleep(remaining)
            windows.append((name, start, time.time()))

        window("idle: refresh + flush timers only", o.stall_idle)
        window(f"loaded: {o.concurrency} connections", 0,
               lambda: self.loadgen(server, o.concurrency, 0.2, o.stall_load, self.header_for(server, "stall")))
        window("after the load: flush of what it counted", o.stall_idle / 2)
        window(f"idle while {o.stall_new_keys:,} keys are created by another process", o.stall_idle,
               lambda: add_filler_keys(server.url, o.stall_new_keys, "bulk", with_revision_per_key=True))
        _, all_slow, all_pauses = server.lag_samples(None, None)
        a_server = self.servers["A"]
        self.results["stalls"] = []
        self.say(f"{'window (B100k)':58} {'secs':>5} {'max lag':>8} {'p99 lag':>8} {'own CPU':>8} {'max GC':>7}   "
                 f"worst sample: {'loop CPU':>8} {'threads':>8}  cause  {'A idle':>7}")
        for name, start, end in windows:
            samples, _, pauses = server.lag_samples(start, end, wait=False)
            gc_max = max((pause[0] for pause in pauses), default=0.0) * 1e3
            stats = lag_stats(samples)
            a_stats = lag_stats(a_server.lag_samples(start, end, wait=False)[0])
            worst = stats["worst"] or {"loop_cpu_ms": float("nan"), "other_threads_ms": float("nan"), "cause": "-"}
            self.results["stalls"].append({"window": name, **stats, "gc_max_ms": gc_max, "a_idle_max_ms": a_stats["max_ms"]})
            self.say(f"{name:58} {end - start:5.1f} {fmt(stats['max_ms'], '.2f', 8)} {fmt(stats['p99_ms'], '.2f', 8)} "
                     f"{fmt(stats['own_max_ms'], '.2f', 8)} {gc_max:7.2f}                 {fmt(worst['loop_cpu_ms'], '.2f', 8)} "
                     f"{fmt(worst['other_threads_ms'], '.2f', 8)}  {worst['cause']:5}  {fmt(a_stats['max_ms'], '.2f', 7)}")
        self.say("(ms. max lag: how late the timer fired at worst, an upper bound of the longest stall. own CPU: the "
                 "largest lag that the server's own CPU use (loop thread + its other threads) explains. max GC: longest "
                 "garbage-collector pause. worst sample: "
                 "CPU of the loop thread and of the server's other threads during it; cause: busy = the loop worked, "
                 "GIL = another server thread held the GIL, OS = the process was not scheduled (other programs). "
                 "A idle: the plain server's max lag in the same seconds = the machine's noise)")
        all_slow.sort(key=lambda item: -item[1])
        self.say("longest single callbacks on B100k's loop by loop-thread CPU (callbacks >= 2 ms wall are recorded):")
        if not all_slow:
            self.say("  none")
        for took, cpu, what, when in all_slow[:8]:
            where = next((name for name, start, end in windows if start <= when <= end), "start-up")
            self.say(f"  {cpu * 1e3:7.2f} ms CPU ({took * 1e3:7.2f} ms wall)  {what[:70]}  [{where}]")
        self.results["slow_callbacks"] = [(t, c, w) for t, c, w, _ in all_slow[:20]]
        all_pauses.sort(reverse=True)
        a_pauses = sorted(a_server.lag_samples(None, None, wait=False)[2], reverse=True)
        self.say("longest garbage-collector pauses in B100k (all threads; >= 1 ms): " + (", ".join(
            f"{took * 1e3:.1f} ms gen {gen} [" + next((name.split(":")[0] for name, start, end in windows
                                                     if start <= when <= end), "start-up") + "]"
            for took, gen, when in all_pauses[:6]) or "none"))
        self.say("  for comparison, A over the whole bench: " + (", ".join(
            f"{took * 1e3:.1f} ms gen {gen}" for took, gen, _ in a_pauses[:3]) or "none"))
        self.results["gc_pauses_b100k"] = [(t, g) for t, g, _ in all_pauses[:20]]

    # -- profile --

    def profile(self):
        o = self.options
        spy = shutil.which("py-spy")
        self.say(f"\n== Profile: py-spy on B under load ({o.profile:g} s, 250 Hz, samples holding the GIL) ==")
        self.say("(a sample is the package's when its deepest package frame has no stand-in frame below it: the "
                 "middleware's own work and what it calls, e.g. hashlib, not the route handler it awaits)")
        if spy is None:
            self.say("py-spy is not installed (pip install py-spy): skipped")
            return
        server = self.servers["B"]
        raw = os.path.join(self.tmp, "B-profile.txt")
        env = dict(os.environ, BENCH_HEADER=self.header_for(server))
        load = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_loadgen", "--port", str(server.port),
                                 "--path", o.path, "--concurrency", str(o.concurrency), "--warmup", "1",
                                 "--duration", str(o.profile + 2), "--server-pid", str(server.pid)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                preexec_fn=pin_to(self.client_cpus))
        time.sleep(1.5)
        spied = subprocess.run([spy, "record", "-p", str(server.pid), "-d", str(int(o.profile)), "-r", "250",
                                "--gil", "--full-filenames", "--format", "raw", "-o", raw],
                               capture_output=True, text=True)
        out, _ = load.communicate()
        if spied.returncode != 0 or not os.path.exists(raw):
            self.say(f"py-spy failed: {spied.stderr.strip()[-500:]}")
            return
        total, attributable, by_function, by_line = analyze_profile(raw)
        if not total:
            self.say("no samples")
            return
        us_per_req = median([r["server_us_per_request"] for r in self.results["runs"]["B"]])
        scale = us_per_req / total  # us per request for one sample's share (GIL-holding samples ~ CPU)
        self.say(f"{total} samples; in the package's own frames (not the handler below them): {attributable} = "
                 f"{attributable / total:.1%} of the server's Python time = ~{attributable * scale:.1f} us of its "
                 f"{us_per_req:.1f} us a request")
        self.say("hottest package functions (self time, incl. the C calls they make):")
        for name, count in sorted(by_function.items(), key=lambda item: -item[1])[:10]:
            self.say(f"  {count / total:6.1%}  ~{count * scale:5.1f} us/req  {name}")
        self.say("hottest package lines:")
        for name, count in sorted(by_line.items(), key=lambda item: -item[1])[:12]:
            self.say(f"  {count / total:6.1%}  ~{count * scale:5.1f} us/req  {name}")
        self.results["profile"] = {"total": total, "attributable": attributable,
                                   "functions": by_function, "lines": by_line}

    # -- summary --

    def summary(self):
        o = self.options
        runs = self.results["runs"]
        s = {label: self.summarize_runs(runs[label]) for label in self.load_labels if label in runs}
        low = {label: self.summarize_runs(r) for label, r in self.results["low_runs"].items()}
        self.results["summary"] = s
        a = s["A"]
        self.say(f"\n== Summary: medians of {o.rounds} round(s), {o.concurrency} connections, GET {o.path}; "
                 "ratios and added figures are medians of per-round comparisons with A ==")
        self.say(f"{'server':32} {'req/s':>7} {'B/A':>6} {'p50 ms':>7} {'p99 ms':>7} {'p99 added':>10} "
                 f"{'srv us/req':>10} {'added':>7} {'CPU B/A':>7} {'max lag':>8} {'max GC':>7} {'ready':>6} {'RSS MB':>7}")
        a_by_round = {r["round"]: r for r in runs["A"]}
        for label in self.load_labels:
            r = s[label]
            # Each ratio is taken within a round (A and this server measured seconds
            # apart), then the median over the rounds.
            pairs = [(run, a_by_round[run["round"]]) for run in runs[label] if run["round"] in a_by_round]
            r.update(ratio=median([run["rps"] / a_run["rps"] for run, a_run in pairs]),
                     p99_added_ms=median([run["p99_ms"] - a_run["p99_ms"] for run, a_run in pairs]),
                     added_us=median([run["server_us_per_request"] - a_run["server_us_per_request"]
                                      for run, a_run in pairs]),
                     cpu_ratio=median([a_run["server_us_per_request"] / run["server_us_per_request"]
                                       for run, a_run in pairs]))
            p99_added = "-" if label == "A" else f"{r['p99_added_ms']:+.2f} ms"
            added = "-" if label == "A" else f"{r['added_us']:+.1f}us"
            server_label = "A" if label == "A0" else label
            self.say(f"{self.title(label):32} {r['rps']:7.0f} {r['ratio']:6.3f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
                     f"{p99_added:>10} {r['us_per_req']:10.1f} {added:>7} {r['cpu_ratio']:7.3f} "
                     f"{r['lag_max_ms']:6.1f}ms {r['gc_max_ms']:5.1f}ms "
                     f"{self.results['startup_seconds'][server_label]:5.2f}s {self.results['rss_mb'][server_label]:7.1f}")
        a0 = s.get("A0")
        if a0:
            a0_by_round = {r["round"]: r for r in runs["A0"]}

            def against_a0(label, field, invert=False):
                values = [(a0_by_round[run["round"]][field] / run[field]) if invert
                          else (run[field] / a0_by_round[run["round"]][field])
                          for run in runs[label] if run["round"] in a0_by_round]
                return median(values)

            self.say("against A0 (plain ComfyUI, the key not sent, so also a shorter request): " + ", ".join(
                f"{label} {against_a0(label, 'rps'):.3f} measured, "
                f"{against_a0(label, 'server_us_per_request', invert=True):.3f} from CPU" for label in self.labels[1:]))
        self.say("(B/A: measured req/s ratio against A, which gets the same requests, key header included, and "
                 "ignores it. CPU B/A: A's CPU per request / this server's = the throughput ratio of "
                 "a saturated core, unaffected by other programs stealing CPU time. max lag: longest event-loop lag in a "
                 "measured window (median over the rounds); max GC: longest garbage-collector pause in any of them)")
        if low:
            self.say("1 connection (unloaded), medians: " + ";  ".join(
                f"{label} p50 {v['p50_ms'] * 1e3:.0f} us, p99 {v['p99_ms'] * 1e3:.0f} us" for label, v in low.items()))
        self.say("\n== Targets (not enforced: the exit code only says whether something broke) ==")
        for label in self.labels[1:]:
            r = s[label]
            self.say(f"{'PASS' if r['ratio'] >= TARGET_RATIO else 'MISS'}  {label:6} throughput ratio >= "
                     f"{TARGET_RATIO:.2f}: {r['ratio']:.3f} measured, {r['cpu_ratio']:.3f} from CPU per request "
                     f"({'PASS' if r['cpu_ratio'] >= TARGET_RATIO else 'MISS'})")
            self.say(f"{'PASS' if r['p99_added_ms'] <= TARGET_P99_ADDED_MS else 'MISS'}  {label:6} p99 added <= "
                     f"{TARGET_P99_ADDED_MS:g} ms: {r['p99_added_ms']:+.2f} ms")
        move = s["B100k"]["ratio"] - s["B"]["ratio"]
        cpu_move = s["B100k"]["cpu_ratio"] - s["B"]["cpu_ratio"]
        self.say(f"{'PASS' if abs(move) <= RATIO_MOVE_TOLERANCE else 'MISS'}  ratio with {o.keys:,} more keys vs "
                 f"4 keys moves <= {RATIO_MOVE_TOLERANCE}: {move:+.3f} measured, {cpu_move:+.3f} from CPU per request "
                 f"({'PASS' if abs(cpu_move) <= RATIO_MOVE_TOLERANCE else 'MISS'})")
        for name, result in self.results.get("bursts", {}).items():
            self.say(f"{'PASS' if result['exact'] else 'MISS'}  burst exact, {result['title']}: "
                     f"{result['statuses'].get('200', 0)} of {o.burst_n} succeeded, L = {o.burst_limit}")
        budget_us = a["us_per_req"] * (1 / TARGET_RATIO - 1)
        self.say(f"(server CPU budget: A spends {a['us_per_req']:.1f} us a request, so a {TARGET_RATIO:.2f} ratio "
                 f"allows {budget_us:.1f} us more; the package adds "
                 + ", ".join(f"{s[label]['added_us']:+.1f} us ({label})" for label in self.labels[1:]) + ")")
        if max(v["client_cpu"] for v in s.values()) > 0.9:
            self.say("warning: the load generator was near its core's limit in some run; ratios may be understated")
        if self.results.get("waited_for_quiet", 0) >= 1:
            self.say(f"waited {self.results['waited_for_quiet']:.0f} s in all for other programs to leave the CPUs")
        if min(v["server_cpu"] for v in s.values()) < 0.85:
            self.say("note: some server used < 85% of its core (other programs shared it): req/s carry that noise; "
                     "srv us/req (CPU per request) does not")

    def cleanup(self):
        for server in list(self.servers.values()) + self.extra_servers:
            server.stop()
        for name in self.pg_databases:
            try:
                postgres_execute(self.options.db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as error:  # noqa: BLE001
                self.say(f"could not drop database {name}: {error}")
        if self.options.keep:
            self.say(f"temp files kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self):
        started = time.perf_counter()
        self.describe_machine()
        try:
            self.setup()
            self.throughput()
            if self.options.profile:
                self.profile()
            self.bursts()
            self.stalls()
            self.summary()
        except Exception as error:  # noqa: BLE001 - report, clean up, exit non-zero
            import traceback
            traceback.print_exc()
            self.note_broken(f"{type(error).__name__}: {error}")
        finally:
            self.cleanup()
        if self.options.json:
            with open(self.options.json, "w", encoding="utf-8") as handle:
                json.dump(self.results, handle, indent=1, default=str)
        self.say(f"\ntotal time {time.perf_counter() - started:.0f} s; "
                 + ("something broke: " + "; ".join(self.broken) if self.broken else "nothing broke (exit 0)"))
        return 1 if self.broken else 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke: short windows, 1 round, 2,000 keys")
    parser.add_argument("--db", help="PostgreSQL URL for the package servers, e.g. postgresql://user:pw@host/postgres: "
                                     "the bench creates (and drops at the end) one database per server on that "
                                     "server, so the user needs CREATEDB; default: a SQLite file per server")
    parser.add_argument("--path", default="/api/features", help="route to drive (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 12; --quick 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 2; --quick 1)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (default 0.5; --quick 0.3)")
    parser.add_argument("--low-duration", type=float, help="seconds of the 1-connection latency run "
                                                            "(default 1; --quick 0 = skip)")
    parser.add_argument("--keys", type=int, help="extra keys for B100k (default 100000; --quick 2000)")
    parser.add_argument("--burst-limit", type=int, default=50)
    parser.add_argument("--burst-n", type=int, default=200)
    parser.add_argument("--no-shared", action="store_true", help="skip Bsh (shared limits on)")
    parser.add_argument("--profile", type=float, default=0, metavar="SECONDS",
                        help="also sample B under load with py-spy for SECONDS and print the package's hottest "
                             "functions and lines (needs py-spy)")
    parser.add_argument("--package", default=REPO, help="package folder to load as the custom node "
                                                         "(default: this repository), e.g. another checkout")
    parser.add_argument("--quiet-wait", type=float, help="before each throughput run, wait up to this many "
                        "seconds for the machine to be idle (default 30; --quick 0)")
    parser.add_argument("--quiet-threshold", type=float, default=0.3, metavar="CORES",
                        help="'idle' = at most this many cores busy (default %(default)s)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and client to separate CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the temp directories (logs, databases)")
    parser.add_argument("--json", help="also write all results to this JSON file")
    options = parser.parse_args(argv)
    if options.db and not options.db.split(":", 1)[0].lower().startswith("postgres"):
        parser.error("--db takes a postgresql:// URL (SQLite is the default)")
    quick = options.quick
    # Many short interleaved rounds, compared round by round: on a shared VM the
    # host's noise drifts over seconds, so A and B measured seconds apart agree
    # far better than medians of long runs minutes apart.
    defaults = {"rounds": (12, 1), "duration": (2.0, 1.0), "warmup": (0.5, 0.3), "low_duration": (1.0, 0.0),
                "keys": (100_000, 2_000), "quiet_wait": (30.0, 0.0)}
    for name, (full, short) in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, short if quick else full)
    options.stall_idle = 2.2 if quick else 6.5      # >= 1 (quick) or 3 refresh/flush cycles of 2 s
    options.stall_load = 1.0 if quick else 5.0
    options.stall_new_keys = 200 if quick else 1000
    return options


def main(argv=None):
    global PACKAGE_DIR
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_loadgen", "_burst"):
        return child_main(argv)
    options = parse_args(argv)
    PACKAGE_DIR = os.path.abspath(options.package)
    return Bench(options).run()


if __name__ == "__main__":
    sys.exit(main())
