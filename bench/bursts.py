"""Burst exactness: N requests at once with a key of limit L must admit exactly L,
in one process and across two sharing a database. Mixed into ``bench.Bench``.
"""

import json
import os
import subprocess
import sys
import time

import loadgen
from server import Server, pin_to


class Bursts:
    def burst(self, servers, key_name, n):
        # Stay clear of an hour boundary: the window (and so the quota) resets there.
        to_next_hour = 3600 - time.time() % 3600
        if to_next_hour < 5:
            time.sleep(to_next_hour + 1)
        command = [sys.executable, loadgen.PATH, "_burst", "--path", self.options.path, "--n", str(n)]
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
        # Scale-out: a second ComfyUI process on B's database, the burst split
        # between them. B shares its limits through the database (the default);
        # Bloc counts them in its process, so two of it would admit up to 2 L.
        first = self.servers["B"]
        second = Server("B-2", os.path.join(self.tmp, "B-2"), package=True, cpus=self.server_cpus,
                        db_url=first.database_url, env=first.env)
        second.start(o.path)
        self.keys[second.label] = self.keys["B"]
        try:
            result = self.burst([first, second], "burst-shared", o.burst_n)
        finally:
            second.stop()
        self.record_burst("B_two_processes", "B + B-2: two processes, one database, shared limits", result)
