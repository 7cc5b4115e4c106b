"""Throughput and latency: each server under the same load, in interleaved rounds.

Mixed into ``bench.Bench``; ``self`` is the bench (options, servers, keys,
results, say).
"""

import json
import os
import subprocess
import sys
import time

import loadgen
from measure import fmt, lag_stats, machine_busy_cores, median
from server import pin_to


class Throughput:
    def loadgen(self, server, concurrency, warmup, duration, header=None):
        command = [sys.executable, loadgen.PATH, "_loadgen", "--port", str(server.port),
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

