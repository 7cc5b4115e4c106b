#!/usr/bin/env python3
"""Start-up cost of keys: seconds until ready and RSS, with and without 100,000 keys.

    python3 bench/startup.py                 # 0 and 100,000 keys, 5 starts each
    python3 bench/startup.py --keys 20000 --starts 3
    python3 bench/startup.py --package /path/to/other/checkout

For each key count, a fresh SQLite database is filled (``fill.add_filler_keys``,
through the package's models), then the stand-in server with the package
(require mode) is started ``--starts`` times. Each start records the seconds
until it answers something other than 503 (the package answers 503 while it
opens its database and loads the keys) and the server's RSS once ready.
Printed: medians per key count, and the RSS the keys add (RSS with keys
minus RSS of the same server with none).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import fill
from measure import median, proc_rss_mb
from server import Server

PROBE = "/api/features"  # any route: the package answers 503 until it is ready


def measure(workdir, keys, starts):
    server = Server(f"{keys}keys", workdir, package=True)
    os.makedirs(os.path.dirname(server.sqlite_url[len("sqlite:///"):]), exist_ok=True)
    if keys:
        fill.add_filler_keys(server.sqlite_url, keys)
    else:
        fill.open_db(server.sqlite_url).close()  # the same migrated database, empty
    seconds, rss = [], []
    for _ in range(starts):
        server.start(PROBE)
        try:
            time.sleep(0.3)  # let the start's garbage settle (the loader thread's last frees)
            seconds.append(server.startup_seconds)
            rss.append(proc_rss_mb(server.pid))
        finally:
            server.stop()
    return seconds, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--package", help="benchmark the package in another checkout")
    options = parser.parse_args()
    if options.package:
        fill.use_package(options.package)
    tmp = tempfile.mkdtemp(prefix="comfy_startup_")
    try:
        results = {}
        for keys in (0, options.keys):
            seconds, rss = measure(os.path.join(tmp, str(keys)), keys, options.starts)
            results[keys] = (median(seconds), median(rss))
            print(f"{keys:>7,} keys: ready in {median(seconds):5.2f} s, RSS {median(rss):6.1f} MB  (medians of "
                  f"{options.starts}; ready {', '.join(f'{s:.2f}' for s in seconds)}; "
                  f"RSS {', '.join(f'{r:.1f}' for r in rss)})", flush=True)
        added = results[options.keys][1] - results[0][1]
        print(f"RSS added by {options.keys:,} keys: {added:.1f} MB; "
              f"ready {results[options.keys][0]:.2f} s against {results[0][0]:.2f} s with none")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
