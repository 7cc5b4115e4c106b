"""What the bench measures with: percentiles, /proc readers, loop-lag statistics.

Standard library only; the load generator (loadgen.py) imports this too.
"""

import os
import statistics
import time


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


def fmt(value, spec=".2f", width=8):
    """A figure right-aligned, or "-" for none (None, NaN)."""
    if value is None or value != value:
        return "-".rjust(width)
    return format(value, spec).rjust(width)


def read_loopmon(path, wall_start=None, wall_end=None):
    """Records of a lag-monitor file (bench/loopmon) inside a time window:
    (samples, slow callbacks, GC pauses).

    samples: (lag, loop thread cpu, process cpu) per 5 ms wake-up;
    slow callbacks: (wall seconds, loop cpu seconds, name, when);
    GC pauses: (seconds, generation, when).
    """
    samples, slow, pauses = [], [], []
    try:
        with open(path, encoding="utf-8") as handle:
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

