#!/usr/bin/env python3
"""Instructions per request: the package's cost counted, not timed.

    python3 bench/instructions.py            # A0, A and B, about 2 minutes
    python3 bench/instructions.py --seconds 20

Wall-clock ratios on a shared 2-core VM move by several percent between
runs; instruction counts do not (repeat runs agree within about 0.5 %). This
runs the ComfyUI stand-in under valgrind's callgrind, drives it with the same
load generator as bench.py (32 keep-alive connections, so the event loop is
always busy, as in the throughput runs), counts the instructions of the
event-loop thread during a measured window and divides by the requests
served in it:

  A0  plain ComfyUI, requests without a key
  A   plain ComfyUI, the very requests B gets (it ignores the key header)
  B   the package in require mode, a valid key in Authorization: Bearer

Instructions are not time (a cache miss costs more than an add), so the
wall-clock ratio from bench.py stays the figure of record; this one is for
telling whether a change to the request path helped. Needs valgrind
(Debian: apt-get install valgrind). Under valgrind the package's periodic jobs
(refresh, flush, job polling) fall on about 100 times fewer requests than at
full speed, so each server is also counted idle for as long and that is
subtracted.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402  (the same load generator as bench.py)
from fill import create_keys  # noqa: E402
from server import Server  # noqa: E402


def run_one(label, workdir, with_package, header_key, seconds):
    """Start one server under callgrind, load it, return (instructions, requests)."""
    out = os.path.join(workdir, f"{label}.callgrind")
    wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
               f"--callgrind-out-file={out}"]
    server = Server(label, os.path.join(workdir, label), package=with_package, wrapper=wrapper)
    key = None
    if with_package:
        key = create_keys(server.database_url, [("bench", 1_000_000_000)])["bench"]
    server.start("/api/features", timeout=300)
    try:
        header = f"Authorization: Bearer {header_key or key}" if (header_key or key) else None
        env = dict(os.environ)
        env.pop("BENCH_HEADER", None)
        if header:
            env["BENCH_HEADER"] = header

        def load(duration):
            done = subprocess.run([sys.executable, loadgen.PATH, "_loadgen", "--port",
                                   str(server.port), "--path", "/api/features", "--warmup", "0",
                                   "--duration", str(duration)], capture_output=True, text=True, env=env,
                                  timeout=duration + 120, check=True)
            return json.loads(done.stdout)

        def counted(action):
            subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], check=True, capture_output=True)
            value = action()
            subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True)
            return value

        load(3)  # warm up: imports, caches, specialised bytecode
        result = counted(lambda: load(seconds))
        # The same time idle: the periodic jobs' work, which valgrind's slowdown
        # spreads over far fewer requests than a real server serves; subtracted.
        counted(lambda: time.sleep(seconds))
        if result["error_count"] or set(result["statuses"]) != {"200"}:
            raise RuntimeError(f"{label}: statuses {result['statuses']}, errors {result['errors']}")
        time.sleep(1)
    finally:
        server.stop()
    # Event-loop thread (thread 1) of the first dump (loaded) and the second (idle).
    loaded, idle = (loop_thread_total(f"{out}.{part}-01") for part in (1, 2))
    return loaded - idle, result["requests"], key


def loop_thread_total(path):
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15, help="measured window per server (default 15)")
    parser.add_argument("--keep", action="store_true", help="keep the callgrind files")
    options = parser.parse_args(argv)
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed (Debian: apt-get install valgrind)")
        return 2
    workdir = tempfile.mkdtemp(prefix="comfyui-api-auth-instr-")
    try:
        counts = {}
        b_total, b_requests, key = run_one("B", workdir, True, None, options.seconds)
        counts["B"] = (b_total, b_requests)
        counts["A"] = run_one("A", workdir, False, key, options.seconds)[:2]
        counts["A0"] = run_one("A0", workdir, False, None, options.seconds)[:2]
    finally:
        if options.keep:
            print(f"callgrind files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    per_request = {label: total / requests for label, (total, requests) in counts.items()}
    print(f"event-loop thread, instructions per request (callgrind, {options.seconds:g} s under load each, "
          "minus as long idle):")
    titles = {"A0": "plain ComfyUI, no key sent", "A": "plain ComfyUI, same requests as B",
              "B": "require mode, valid Bearer key"}
    for label in ("A0", "A", "B"):
        total, requests = counts[label]
        print(f"  {label:3} {titles[label]:34} {per_request[label]:9,.0f}   ({requests:,} requests)")
    b = per_request["B"]
    print(f"B adds {b - per_request['A']:,.0f} instructions a request to A ({per_request['A'] / b:.3f} as a ratio), "
          f"{b - per_request['A0']:,.0f} to A0 ({per_request['A0'] / b:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
