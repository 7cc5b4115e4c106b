"""Event-loop stalls: B100k restarted with callback tracing, idle, loaded, and
while another process creates keys. Mixed into ``bench.Bench``.
"""

import os
import time

from fill import add_filler_keys, count_keys
from measure import fmt, lag_stats, proc_rss_mb
from server import Server


class Stalls:
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
                 f"{server.startup_seconds:.2f} s with {count_keys(server.database_url):,} keys; "
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
               lambda: add_filler_keys(server.database_url, o.stall_new_keys, "bulk", with_revision_per_key=True))
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
