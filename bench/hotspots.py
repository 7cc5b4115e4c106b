"""Where the package's time goes: py-spy samples of B under load (``--profile``).

Mixed into ``bench.Bench``; needs py-spy.
"""

import os
import shutil
import subprocess
import sys
import time

import fill
import loadgen
from measure import median
from server import HOST_DIR, pin_to


def package_frame(filename: str) -> bool:
    if not os.path.isabs(filename):  # <frozen abc>, <string> (code made by exec, e.g. dataclass __init__)
        return False
    return (filename.startswith(fill.PACKAGE_DIR + os.sep)
            and not filename.startswith(os.path.join(fill.PACKAGE_DIR, "tests") + os.sep)
            and not filename.startswith(os.path.join(fill.PACKAGE_DIR, "bench") + os.sep))


def host_frame(filename: str) -> bool:
    return os.path.isabs(filename) and filename.startswith(HOST_DIR + os.sep)


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
            short = os.path.relpath(filename, fill.PACKAGE_DIR)
            by_function[f"{short}: {name}"] = by_function.get(f"{short}: {name}", 0) + count
            by_line[f"{short}:{lineno} ({name})"] = by_line.get(f"{short}:{lineno} ({name})", 0) + count
    return total, attributable, by_function, by_line


class Hotspots:
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
        load = subprocess.Popen([sys.executable, loadgen.PATH, "_loadgen", "--port", str(server.port),
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
