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
  Bloc  like B with COMFYUI_API_AUTH_SHARED_LIMITS=off (limits counted in
        this process, as a single ComfyUI process can; B claims quota from
        the database in batches, as several processes sharing it need)

and drives the same cheap core route (GET /api/features by default) with a
closed-loop load generator in another process (32 keep-alive connections),
interleaving the servers for several rounds and reporting medians. Then:
burst exactness of the rate limit (in one process, and across two processes
sharing the database), and event-loop stalls measured inside the server by a
lag monitor injected with bench/loopmon/sitecustomize.py.

The parts: loadgen.py (load generator and burst client, child processes),
server.py (a server process, on tests/standin.py), fill.py (keys through the
package's storage), measure.py (statistics, /proc readers), and one module per
phase mixed into Bench: throughput.py, bursts.py, stalls.py, hotspots.py
(--profile), report.py (machine and summary).

Standard library only (the package and the stand-in need aiohttp and peewee;
--db postgresql needs psycopg2). See bench/README.md.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import fill
import loadgen
from bursts import Bursts
from fill import add_filler_keys, count_keys, create_keys, postgres_database_url, postgres_execute
from hotspots import Hotspots
from measure import proc_rss_mb
from report import Report
from server import Server, cpu_plan
from stalls import Stalls
from throughput import Throughput

SERVER_TITLES = {
    "A0": "A0    no package, no key sent",
    "A": "A     no package, same requests",
    "B": "B     require",
    "B100k": "B100k require, +{keys:,} keys",
    "Bloc": "Bloc  require, SHARED_LIMITS=off",
}


class Bench(Report, Throughput, Bursts, Stalls, Hotspots):
    """One run: servers set up, then each phase (a mixin of its own module), then the summary."""

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
        self.labels = ["A", "B", "B100k"] + ([] if options.no_local else ["Bloc"])
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
                env = {"COMFYUI_API_AUTH_SHARED_LIMITS": "off"} if label == "Bloc" else {}
                server = self.new_server(label, package=True, db_url=self.db_url_for(label), env=env)
                self.keys[label] = create_keys(server.database_url, [
                    ("bench", 1_000_000_000), ("burst", o.burst_limit), ("burst-shared", o.burst_limit),
                    ("stall", 1_000_000_000)])
            self.servers[label] = server
        b100k = self.servers["B100k"]
        filled = add_filler_keys(b100k.database_url, o.keys)
        self.say(f"B100k database: {o.keys:,} extra keys inserted through the package's models in {filled:.1f} s "
                 f"({count_keys(b100k.database_url):,} live keys); "
                 "the others: 4 keys each (bench, burst, burst-shared, stall)")
        for label in self.labels:
            server = self.servers[label]
            server.start(o.path)
            self.say(f"{label:6} pid {server.pid:>7}  port {server.port:>5}  ready in {server.startup_seconds:5.2f} s"
                     f"  RSS {proc_rss_mb(server.pid):6.1f} MB  {self.title(label)[6:]}")
        self.results["startup_seconds"] = {label: self.servers[label].startup_seconds for label in self.labels}
        self.results["rss_mb"] = {label: proc_rss_mb(self.servers[label].pid) for label in self.labels}
        # sanity: same route, same answer; the package refuses without a key
        status, _, body_a = self.servers["A"].fetch(o.path)
        if status != 200:
            self.note_broken(f"A answers GET {o.path} with {status}")
        for label in self.labels[1:]:
            server = self.servers[label]
            status, _, _ = server.fetch(o.path)
            if status != 401:
                self.note_broken(f"{label} without a key answers {status}, expected 401")
            status, headers, body = server.fetch(o.path, {"Authorization": "Bearer " + self.keys[label]["bench"]})
            if status != 200 or body != body_a or "X-RateLimit-Remaining" not in headers:
                self.note_broken(f"{label} with a key answers {status} (body same as A: {body == body_a})")
        self.say(f"check: A GET {o.path} -> 200; every package server -> 401 without a key, "
                 "200 + X-RateLimit-* and the same body with one")

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
    parser.add_argument("--no-local", action="store_true",
                        help="skip Bloc (B with SHARED_LIMITS=off: limits counted in the server process)")
    parser.add_argument("--profile", type=float, default=0, metavar="SECONDS",
                        help="also sample B under load with py-spy for SECONDS and print the package's hottest "
                             "functions and lines (needs py-spy)")
    parser.add_argument("--package", default=fill.REPO, help="package folder to load as the custom node "
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
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_loadgen", "_burst"):  # the child processes, also as loadgen.py
        return loadgen.main(argv)
    options = parse_args(argv)
    fill.use_package(options.package)
    return Bench(options).run()


if __name__ == "__main__":
    sys.exit(main())
