"""A benchmarked server: the tests' stand-in process (tests/standin.py) plus
the lag monitor, CPU pinning, a wrapper command and start-up timing."""

import os
import signal
import sys
import time

import fill
from measure import read_loopmon

HERE = os.path.dirname(os.path.abspath(__file__))
LOOPMON_DIR = os.path.join(HERE, "loopmon")
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from standin import HOST_DIR, StandIn  # noqa: E402,F401  (tests/ is not a package)


def pin_to(cpus):
    """preexec_fn that pins a child (and every thread it starts) to cpus."""
    if not cpus:
        return None

    def pin():
        os.sched_setaffinity(0, cpus)
    return pin


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



class Server(StandIn):
    """One ComfyUI stand-in process, the package in require mode or none (plain ComfyUI)."""

    not_inherited = ("COMFYUI_API_AUTH", "BENCH_")

    def __init__(self, label, workdir, *, package, env=None, cpus=None, trace=False, db_url=None, wrapper=None):
        # wrapper: a command to run the server under (valgrind); no lag monitor then
        super().__init__(workdir, env=env, package_dir=fill.PACKAGE_DIR if package else None,
                         wrapper=wrapper or (), name=f"{label}: server", log_name="server.log")
        self.label = label
        self.package = package
        self.cpus = cpus
        self.trace = trace
        self.db_url = db_url  # None: the SQLite file in the server's user dir
        self.loopmon_path = os.path.join(self.workdir, "loopmon.txt")
        for folder in ("user", "output", "input"):
            os.makedirs(os.path.join(self.workdir, folder), exist_ok=True)

    @property
    def sqlite_url(self):
        paths = fill.layout()
        return "sqlite:///" + paths.db_file(paths.data_dir(self.user_dir))

    @property
    def database_url(self):
        return self.db_url or self.sqlite_url

    def add_env(self, env):
        if not self.wrapper:  # the lag monitor's timer would be counted as the server's work
            env["PYTHONPATH"] = LOOPMON_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            env["BENCH_LOOPMON_OUT"] = self.loopmon_path
        if self.trace:
            env["BENCH_LOOPMON_TRACE"] = "1"
        if self.package:
            env["COMFYUI_API_AUTH"] = "require"
            if self.db_url:
                env["COMFYUI_API_AUTH_DB"] = self.db_url

    def ready(self, status):
        return status != 503  # 503 = the package is still opening its database

    def start(self, probe_path, timeout=180):
        self.probe_path = probe_path
        return super().start(timeout, preexec_fn=pin_to(self.cpus))

    def stop(self, sig=signal.SIGTERM, timeout=20):
        super().stop(sig, timeout)

    def lag_samples(self, wall_start=None, wall_end=None, wait=True):
        """Loop-monitor records inside a time window (see ``measure.read_loopmon``)."""
        if wait:
            time.sleep(1.1)  # the monitor appends once a second
        return read_loopmon(self.loopmon_path, wall_start, wall_end)
