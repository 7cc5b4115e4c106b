"""What the bench prints about the run as a whole: the machine, and the summary
with its targets. Mixed into ``bench.Bench``.
"""

import os
import platform
import subprocess
import sys

import fill
from measure import median

TARGET_RATIO = 0.90
TARGET_P99_ADDED_MS = 1.0
RATIO_MOVE_TOLERANCE = 0.03  # "must not move materially": 100k keys vs few keys


class Report:
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
            commit = subprocess.run(["git", "-C", fill.PACKAGE_DIR, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip() or "?"
            dirty = subprocess.run(["git", "-C", fill.PACKAGE_DIR, "status", "--porcelain", "--untracked-files=no"],
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
        self.say(f"package:    {fill.PACKAGE_DIR} at {commit}")
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
            return fill.package_module("storage.database").describe(url)
        except Exception:  # noqa: BLE001
            return "<url>"


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
        for result in self.results.get("bursts", {}).values():
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

