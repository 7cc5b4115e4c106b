#!/usr/bin/env python3
"""Request-path benchmark: what the API-key package costs a ComfyUI server.

    python3 bench/bench.py            # full run (about 2 minutes)
    python3 bench/bench.py --quick    # CI smoke (about 20 seconds)
    python3 bench/bench.py --db postgresql://user:pass@host/dbname

One run starts the ComfyUI stand-in (tests/comfyui_host) three times, each a
separate process on its own free loopback port with its own temp directories:

  A     plain ComfyUI, no package
  B     the package in require mode, a handful of keys
  B100k the package in require mode, 100,000 keys in the database

and drives the same cheap core route (GET /api/features by default) with a
closed-loop load generator in another process (32 keep-alive connections),
interleaving A, B and B100k for several rounds and reporting medians. Then:
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
import resource
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
    """(status, content length, lower-cased header dict) of a response head."""
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
            PACKAGE, os.path.join(REPO, "__init__.py"), submodule_search_locations=[REPO])
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


def postgres_schema_url(url: str, schema: str) -> str:
    """The same PostgreSQL database, with search_path set to a schema of our own."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "options"] + [("options", f"-c search_path={schema}")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


def postgres_execute(url: str, sql: str):
    database_mod = package_module("storage.database")
    database = database_mod.open_database(url)
    try:
        database.execute_sql(sql)
        if not database.autocommit:
            database.commit()
    finally:
        database.close()


# ---------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------

class Server:
    """One ComfyUI stand-in process."""

    def __init__(self, label, workdir, *, package, env=None, cpus=None, trace=False, db_url=None):
        self.label = label
        self.workdir = workdir
        self.package = package
        self.env = dict(env or {})
        self.cpus = cpus
        self.trace = trace
        self.db_url = db_url
        self.port = None
        self.process = None
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

    def start(self, probe_path, timeout=120):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_API_AUTH", "BENCH_"))}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = LOOPMON_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["BENCH_LOOPMON_OUT"] = self.loopmon_path
        if self.trace:
            env["BENCH_LOOPMON_TRACE"] = "1"
        if self.package:
            env["COMFYUI_API_AUTH"] = "require"
            if self.db_url:
                env["COMFYUI_API_AUTH_DB"] = self.db_url
        command = [sys.executable, HOST_MAIN, "--listen", "127.0.0.1", "--port", str(self.port),
                   "--user-directory", self.user_dir,
                   "--output-directory", os.path.join(self.workdir, "output"),
                   "--input-directory", os.path.join(self.workdir, "input")]
        if self.package:
            command += ["--custom-node", REPO]
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
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    @property
    def pid(self):
        return self.process.pid

    def lag_samples(self, wall_start=None, wall_end=None, wait=True):
        """(lags, slow callbacks) recorded by the loop monitor inside a window."""
        if wait:
            time.sleep(1.1)  # the monitor appends once a second
        lags, slow = [], []
        try:
            with open(self.loopmon_path, encoding="utf-8") as handle:
                for line in handle:
                    parts = line.split(" ", 3)
                    when = float(parts[0])
                    if (wall_start is not None and when < wall_start) or (wall_end is not None and when > wall_end):
                        continue
                    if parts[1] == "slow":
                        slow.append((float(parts[2]), parts[3].strip(), when))
                    else:
                        lags.append(float(parts[1]))
        except OSError:
            pass
        return lags, slow


def lag_stats(lags):
    ordered = sorted(lags)
    return {"samples": len(ordered),
            "max_ms": (ordered[-1] * 1e3) if ordered else float("nan"),
            "p99_ms": percentile(ordered, 0.99) * 1e3 if ordered else float("nan")}


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------

class Bench:
    def __init__(self, options):
        self.options = options
        self.broken: list[str] = []
        self.results: dict = {"runs": {}, "low_runs": {}}
        self.server_cpus, self.client_cpus, self.pin_note = cpu_plan(not options.no_pin)
        self.tmp = tempfile.mkdtemp(prefix="comfyui-api-auth-bench-")
        self.servers: dict[str, Server] = {}
        self.keys: dict[str, dict] = {}
        self.pg_schemas: list[str] = []

    # -- output --

    def say(self, text=""):
        print(text, flush=True)

    def note_broken(self, what):
        self.broken.append(what)
        self.say(f"  !! BROKEN: {what}")

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
            commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip() or "?"
            dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
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
        self.say(f"package:    {REPO} at {commit}")
        self.say(f"load avg:   {loadavg} (at start; other work on the machine adds noise)")
        o = self.options
        self.say(f"settings:   route GET {o.path}; {o.concurrency} connections, keep-alive, closed loop; "
                 f"{o.rounds} round(s) x ({o.warmup:g} s warm-up + {o.duration:g} s measured) per server; "
                 f"{o.keys:,} keys for B100k; DB {'(--db) ' + self.describe_url(o.db) if o.db else 'SQLite (default file)'}")
        self.results["machine"] = {"cpu": cpu_model, "cores": os.cpu_count(), "python": platform.python_version(),
                                   "aiohttp": aiohttp_version, "commit": commit, "pinning": self.pin_note}

    @staticmethod
    def describe_url(url):
        try:
            return package_module("storage.database").describe(url)
        except Exception:  # noqa: BLE001
            return "<url>"

    # -- setup --

    def db_url_for(self, label):
        """None (SQLite in the server's user dir) or a PostgreSQL schema of our own."""
        if not self.options.db:
            return None
        schema = f"comfy_bench_{label.lower()}_{os.getpid()}"
        postgres_execute(self.options.db, f'CREATE SCHEMA "{schema}"')
        self.pg_schemas.append(schema)
        return postgres_schema_url(self.options.db, schema)

    def setup(self):
        o = self.options
        self.say("\n== Setup ==")
        a = Server("A", os.path.join(self.tmp, "A"), package=False, cpus=self.server_cpus)
        b = Server("B", os.path.join(self.tmp, "B"), package=True, cpus=self.server_cpus,
                   db_url=self.db_url_for("B"))
        c = Server("B100k", os.path.join(self.tmp, "B100k"), package=True, cpus=self.server_cpus,
                   db_url=self.db_url_for("B100k"))
        limit = o.burst_limit
        for server in (b, c):
            self.keys[server.label] = create_keys(server.url, [
                ("bench", 1_000_000_000), ("burst", limit), ("burst-shared", limit), ("stall", 1_000_000_000)])
        filled = add_filler_keys(c.url, o.keys)
        self.say(f"B100k database: {o.keys:,} extra keys inserted through the package's models in {filled:.1f} s "
                 f"({count_keys(c.url):,} live keys); B: {count_keys(b.url)} keys")
        for server in (a, b, c):
            server.start(o.path)
            self.servers[server.label] = server
            self.say(f"{server.label:6} pid {server.pid:>7}  port {server.port}  ready in {server.startup_seconds:5.2f} s"
                     f"  RSS {proc_rss_mb(server.pid):6.1f} MB  ({'package, require mode' if server.package else 'no package'})")
        self.results["startup_seconds"] = {s.label: s.startup_seconds for s in (a, b, c)}
        # sanity: same route, same answer; the package refuses without a key
        status, _, body_a = a.get(o.path)
        if status != 200:
            self.note_broken(f"A answers GET {o.path} with {status}")
        for server in (b, c):
            status, _, _ = server.get(o.path)
            if status != 401:
                self.note_broken(f"{server.label} without a key answers {status}, expected 401")
            status, headers, body = server.get(o.path, {"Authorization": "Bearer " + self.keys[server.label]["bench"]})
            if status != 200 or body != body_a or "X-RateLimit-Remaining" not in headers:
                self.note_broken(f"{server.label} with a key answers {status} (body same as A: {body == body_a})")
        self.say(f"check: A GET {o.path} -> 200; B and B100k -> 401 without a key, 200 + X-RateLimit-* with one")

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

    def header_for(self, server, name="bench"):
        return f"Authorization: Bearer {self.keys[server.label][name]}" if server.package else None

    def check_run(self, server, result):
        bad = {k: v for k, v in result["statuses"].items() if k != "200"}
        if bad or result["error_count"]:
            self.note_broken(f"{server.label}: statuses {result['statuses']}, errors {result['errors']}")

    def throughput(self):
        o = self.options
        labels = ["A", "B", "B100k"]
        self.say(f"\n== Throughput: {o.concurrency} connections, GET {o.path}, interleaved rounds ==")
        self.say("round server      req/s   p50 ms   p90 ms   p99 ms   max ms  srv us/req  srv cpu  "
                 "client cpu  others cpu  loop lag max/p99 ms")
        for round_index in range(o.rounds):
            order = labels[round_index % 3:] + labels[:round_index % 3]
            for label in order:
                server = self.servers[label]
                result = self.loadgen(server, o.concurrency, o.warmup, o.duration, self.header_for(server))
                lags, _ = server.lag_samples(result["wall_start"], result["wall_end"])
                result["lag"] = lag_stats(lags)
                self.check_run(server, result)
                self.results["runs"].setdefault(label, []).append(result)
                self.say(f"{round_index + 1:>5} {label:6} {result['rps']:10.0f} {fmt(result['p50_ms'])} "
                         f"{fmt(result['p90_ms'])} {fmt(result['p99_ms'])} {fmt(result['max_ms'])} "
                         f"{fmt(result['server_us_per_request'], '.1f', 11)} {fmt(result['server_cpu'], '.2f')} "
                         f"{fmt(result['client_cpu'], '.2f', 11)} {fmt(result['other_cpu'], '.2f', 11)}   "
                         f"{result['lag']['max_ms']:.2f}/{result['lag']['p99_ms']:.2f}")
                if result["client_cpu"] > 0.90:
                    self.say("      note: the load generator used >90% of its core: it may be the bottleneck")
            if o.low_duration > 0:
                for label in order:
                    server = self.servers[label]
                    result = self.loadgen(server, 1, min(o.warmup, 0.5), o.low_duration, self.header_for(server))
                    self.check_run(server, result)
                    self.results["low_runs"].setdefault(label, []).append(result)
                    self.say(f"{round_index + 1:>5} {label:6} {result['rps']:10.0f} {fmt(result['p50_ms'])} "
                             f"{fmt(result['p90_ms'])} {fmt(result['p99_ms'])} {fmt(result['max_ms'])} "
                             f"{fmt(result['server_us_per_request'], '.1f', 11)} {fmt(result['server_cpu'], '.2f')} "
                             f"{fmt(result['client_cpu'], '.2f', 11)} {fmt(result['other_cpu'], '.2f', 11)}   "
                             "(1 connection: unloaded latency)")

    def summarize_runs(self, runs):
        return {
            "rps": median([r["rps"] for r in runs]),
            "p50_ms": median([r["p50_ms"] for r in runs]),
            "p99_ms": median([r["p99_ms"] for r in runs]),
            "us_per_req": median([r["server_us_per_request"] for r in runs]),
            "lag_max_ms": max((r["lag"]["max_ms"] for r in runs if "lag" in r), default=float("nan")),
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

    def bursts(self):
        o = self.options
        limit, n = o.burst_limit, o.burst_n
        self.say(f"\n== Burst exactness: key with limit L={limit}/hour, N={n} concurrent requests ==")
        self.results["bursts"] = {}
        for label in ("B", "B100k"):
            server = self.servers[label]
            result = self.burst([server], "burst", n)
            ok, limited = result["statuses"].get("200", 0), result["statuses"].get("429", 0)
            exact = ok == min(limit, n) and limited == n - ok and not result["error_count"]
            self.results["bursts"][label] = {**result, "exact": exact}
            self.say(f"{label:6} one process:  200 x {ok}, 429 x {limited}"
                     + (f", other {result['statuses']}" if ok + limited != n else "")
                     + f"  -> {'PASS (exactly L succeed)' if exact else 'MISS'}")
            if result["error_count"] or ok + limited != n:
                self.note_broken(f"burst on {label}: {result}")
        # Scale-out: two ComfyUI processes on one database, the burst split between them.
        b = self.servers["B"]
        b2 = Server("B2", os.path.join(self.tmp, "B2"), package=True, cpus=self.server_cpus, db_url=b.url)
        b2.start(o.path)
        try:
            keys_b = self.keys["B"]
            self.keys["B2"] = keys_b
            result = self.burst([b, b2], "burst-shared", n)
        finally:
            b2.stop()
        ok, limited = result["statuses"].get("200", 0), result["statuses"].get("429", 0)
        exact = ok == min(limit, n) and limited == n - ok and not result["error_count"]
        self.results["bursts"]["two_processes"] = {**result, "exact": exact}
        split = ", ".join(f"port {port}: {stats}" for port, stats in result["per_port"].items())
        self.say(f"B + B2 two processes sharing B's database, N split evenly: 200 x {ok}, 429 x {limited}  "
                 f"-> {'PASS (exactly L succeed)' if exact else f'MISS ({ok - limit:+d} over the limit)'}")
        self.say(f"       per process: {split}")
        if result["error_count"]:
            self.note_broken(f"burst on two processes: {result['errors']}")

    # -- stalls --

    def stalls(self):
        o = self.options
        self.say("\n== Event-loop stalls (lag monitor inside the server process, sampling every 5 ms) ==")
        old = self.servers.pop("B100k")
        old.stop()
        server = Server("B100k-trace", old.workdir, package=True, cpus=self.server_cpus, trace=True,
                        db_url=old.db_url)
        server.loopmon_path = os.path.join(old.workdir, "loopmon-trace.txt")
        self.keys[server.label] = self.keys["B100k"]
        server.start(o.path)
        self.servers[server.label] = server
        self.say(f"restarted B100k with callback tracing (callbacks >= 2 ms are named): ready in "
                 f"{server.startup_seconds:.2f} s with {count_keys(server.url):,} keys; RSS {proc_rss_mb(server.pid):.1f} MB")
        windows = []

        def window(name, seconds, action=None):
            start = time.time()
            extra = action() if action else None
            remaining = seconds - (time.time() - start)
            if remaining > 0:
                time.sleep(remaining)
            windows.append((name, start, time.time(), extra))

        # the server sits idle: background refresh and flush run every ~2 s
        window("idle (refresh + flush timers)", o.stall_idle)
        # under the same load as the throughput runs
        window(f"loaded ({o.concurrency} connections)", 0,
               lambda: self.loadgen(server, o.concurrency, 0.2, o.stall_load, self.header_for(server, "stall")))
        # right after the load: the flush writes what the load counted
        window("after load (flush of the counted usage)", o.stall_idle / 2)
        # another process (a CLI, another ComfyUI) creates many keys: refresh applies them
        window(f"idle while {o.stall_new_keys:,} keys are created elsewhere (one transaction, "
               "one revision per key)", o.stall_idle,
               lambda: add_filler_keys(server.url, o.stall_new_keys, "bulk", with_revision_per_key=True))
        _, all_slow = server.lag_samples(None, None)
        a_server = self.servers["A"]
        self.results["stalls"] = []
        self.say(f"{'window':75} {'seconds':>7} {'max lag ms':>10} {'p99 lag ms':>10}  (A idle, same time: max)")
        for name, start, end, _ in windows:
            lags, _ = server.lag_samples(start, end, wait=False)
            stats = lag_stats(lags)
            a_lags, _ = a_server.lag_samples(start, end, wait=False)
            a_stats = lag_stats(a_lags)
            self.results["stalls"].append({"window": name, **stats, "a_idle_max_ms": a_stats["max_ms"]})
            self.say(f"{name:75} {end - start:7.1f} {fmt(stats['max_ms'], '.2f', 10)} {fmt(stats['p99_ms'], '.2f', 10)}"
                     f"  ({fmt(a_stats['max_ms'], '.2f', 5)})")
        all_slow.sort(reverse=True)
        self.say("longest single callbacks on the loop (>= 2 ms), named:")
        if not all_slow:
            self.say("  none")
        for took, what, when in all_slow[:8]:
            where = next((name for name, start, end, _ in windows if start <= when <= end), "between windows")
            self.say(f"  {took * 1e3:7.2f} ms  {what[:90]}  [{where}]")
        self.results["slow_callbacks"] = [(t, w) for t, w, _ in all_slow[:20]]
        self.say("(lag = how late a 5 ms timer fires: an upper bound of the longest stall in the window; under "
                 "load it includes one loop iteration's worth of queued requests, as for A)")

    # -- summary --

    def summary(self):
        o = self.options
        runs = self.results["runs"]
        s = {label: self.summarize_runs(runs[label]) for label in runs}
        low = {label: self.summarize_runs(r) for label, r in self.results["low_runs"].items()}
        self.results["summary"] = s
        a = s["A"]
        self.say(f"\n== Summary: medians of {o.rounds} round(s), {o.concurrency} connections, GET {o.path} ==")
        self.say(f"{'server':26} {'req/s':>8} {'B/A':>6} {'p50 ms':>7} {'p99 ms':>7} {'p99 added':>9} "
                 f"{'srv us/req':>10} {'added us':>8} {'max lag':>8} {'ready s':>7}")
        verdicts = []
        for label, title in (("A", "A  no package"), ("B", "B  require, 4 keys"),
                             ("B100k", f"B100k require, {o.keys + 4:,} keys")):
            r = s[label]
            ratio = r["rps"] / a["rps"]
            added = r["p99_ms"] - a["p99_ms"]
            cost = r["us_per_req"] - a["us_per_req"]
            r.update(ratio=ratio, p99_added_ms=added, added_us=cost)
            start = self.results["startup_seconds"].get(label, float("nan"))
            self.say(f"{title:26} {r['rps']:8.0f} {ratio:6.3f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
                     f"{('-' if label == 'A' else f'{added:+.2f} ms'):>9} {r['us_per_req']:10.1f} "
                     f"{('-' if label == 'A' else f'{cost:+.1f}'):>8} {r['lag_max_ms']:7.1f}ms {start:7.2f}")
        if low:
            self.say("unloaded (1 connection) medians: " + ";  ".join(
                f"{label} p50 {v['p50_ms']:.3f} ms, p99 {v['p99_ms']:.3f} ms" for label, v in low.items()))
            for label in ("B", "B100k"):
                if label in low and "A" in low:
                    self.say(f"  {label}: adds {(low[label]['p50_ms'] - low['A']['p50_ms']) * 1e3:+.0f} us at p50, "
                             f"{(low[label]['p99_ms'] - low['A']['p99_ms']) * 1e3:+.0f} us at p99 on an idle server")
        self.say("\n== Targets ==")
        for label in ("B", "B100k"):
            r = s[label]
            for name, ok, shown in (
                    (f"{label}: throughput ratio B/A >= {TARGET_RATIO:.2f}", r["ratio"] >= TARGET_RATIO,
                     f"{r['ratio']:.3f}"),
                    (f"{label}: p99 added <= {TARGET_P99_ADDED_MS:g} ms", r["p99_added_ms"] <= TARGET_P99_ADDED_MS,
                     f"{r['p99_added_ms']:+.2f} ms")):
                verdicts.append((name, ok))
                self.say(f"{'PASS' if ok else 'MISS'}  {name:45} {shown}")
        move = s["B100k"]["ratio"] - s["B"]["ratio"]
        ok = abs(move) <= RATIO_MOVE_TOLERANCE
        self.say(f"{'PASS' if ok else 'MISS'}  {'ratio with 100k keys vs few keys (|diff| <= 0.03)':45} {move:+.3f}")
        bursts = self.results.get("bursts", {})
        for label, name in (("B", "burst exact, one process"), ("B100k", "burst exact, one process, 100k keys"),
                            ("two_processes", "burst exact, two processes, one database")):
            if label in bursts:
                result = bursts[label]
                self.say(f"{'PASS' if result['exact'] else 'MISS'}  {name:45} "
                         f"{result['statuses'].get('200', 0)} of {o.burst_n} succeeded, L = {o.burst_limit}")
        budget_us = a["us_per_req"] * (1 / TARGET_RATIO - 1)
        self.say(f"(budget: at {a['us_per_req']:.1f} us a request for A, a {TARGET_RATIO:.0%} ratio allows "
                 f"{budget_us:.1f} us added; measured {s['B']['added_us']:+.1f} us (B), "
                 f"{s['B100k']['added_us']:+.1f} us (B100k) of server CPU a request)")
        if max(v["client_cpu"] for v in s.values()) > 0.9:
            self.say("warning: the load generator was near its core's limit in some run; ratios may be understated")
        if min(v["server_cpu"] for v in s.values()) < 0.85:
            self.say("warning: a server used < 85% of its core: it was not saturated, so req/s reflect the client "
                     "or other load; compare srv us/req instead")

    def cleanup(self):
        for server in self.servers.values():
            server.stop()
        for schema in self.pg_schemas:
            try:
                postgres_execute(self.options.db, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except Exception as error:  # noqa: BLE001
                self.say(f"could not drop schema {schema}: {error}")
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
    parser.add_argument("--db", help="database URL for B and B100k, e.g. postgresql://user:pw@host/db "
                                     "(the bench creates and drops two schemas in it); default SQLite files")
    parser.add_argument("--path", default="/api/features", help="route to drive (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 5; --quick 1)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (default 1; --quick 0.3)")
    parser.add_argument("--low-duration", type=float, help="seconds of the 1-connection latency run "
                                                            "(default 2; --quick 0 = skip)")
    parser.add_argument("--keys", type=int, help="extra keys for B100k (default 100000; --quick 2000)")
    parser.add_argument("--burst-limit", type=int, default=50)
    parser.add_argument("--burst-n", type=int, default=200)
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and client to separate CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the temp directories (logs, databases)")
    parser.add_argument("--json", help="also write all results to this JSON file")
    options = parser.parse_args(argv)
    quick = options.quick
    defaults = {"rounds": (3, 1), "duration": (5.0, 1.0), "warmup": (1.0, 0.3), "low_duration": (2.0, 0.0),
                "keys": (100_000, 2_000)}
    for name, (full, short) in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, short if quick else full)
    options.stall_idle = 2.5 if quick else 6.5      # >= 1 (quick) or 3 refresh/flush cycles of 2 s
    options.stall_load = 1.0 if quick else 5.0
    options.stall_new_keys = 200 if quick else 1000
    return options


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_loadgen", "_burst"):
        return child_main(argv)
    options = parse_args(argv)
    return Bench(options).run()


if __name__ == "__main__":
    sys.exit(main())
