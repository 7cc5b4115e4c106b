"""One ComfyUI stand-in process, for the tests and the benchmark alike.

``StandIn`` starts ``tests/comfyui_host/main.py`` as a real process on a
free loopback port with its own folders and log, waits until it answers,
stops it with a signal, and runs the package's command line against its
user directory. ``tests/conftest.py``'s ``Host`` adds requests-based helpers
and PostgreSQL databases; ``bench/server.py``'s ``Server`` adds the lag
monitor, CPU pinning and a wrapper command (valgrind). Standard library only:
the benchmark runs without the test requirements.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_DIR = os.path.join(REPO, "tests", "comfyui_host")
HOST_MAIN = os.path.join(HOST_DIR, "main.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandIn:
    """The stand-in with a custom node (``package_dir``; None: plain ComfyUI)."""

    # Variables of this process that the server must not inherit: the
    # package's own settings come from ``env`` only.
    not_inherited = ("COMFYUI_API_AUTH",)
    probe_path = "/api/auth/status"  # asked until the server answers

    def __init__(self, workdir, *, env=None, package_dir=REPO, listen="127.0.0.1", extra_args=(),
                 wrapper=(), name="host", log_name="host.log"):
        self.workdir = str(workdir)
        self.user_dir = os.path.join(self.workdir, "user")
        self.env = dict(env or {})
        self.package_dir = package_dir
        self.listen = listen
        self.extra_args = list(extra_args)
        self.wrapper = list(wrapper)  # a command to run the server under, e.g. valgrind
        self.name = name
        self.port = free_port()
        self.process = None
        self._log = None
        self.log_path = os.path.join(self.workdir, log_name)
        self.startup_seconds = float("nan")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def pid(self) -> int:
        return self.process.pid

    def inherited_env(self) -> dict:
        return {k: v for k, v in os.environ.items() if not k.startswith(self.not_inherited)}

    def add_env(self, env: dict):
        """Subclasses' own variables, set before ``self.env`` (which wins)."""

    def server_env(self) -> dict:
        env = self.inherited_env()
        env["PYTHONUNBUFFERED"] = "1"
        self.add_env(env)
        env.update(self.env)
        return env

    def command(self) -> list:
        command = self.wrapper + [
            sys.executable, HOST_MAIN, "--listen", self.listen, "--port", str(self.port),
            "--user-directory", self.user_dir,
            "--output-directory", os.path.join(self.workdir, "output"),
            "--input-directory", os.path.join(self.workdir, "input"),
            "--temp-directory", os.path.join(self.workdir, "temp")]
        if self.package_dir:
            command += ["--custom-node", self.package_dir]
        return command + self.extra_args

    def ready(self, status: int) -> bool:
        """Whether a first answer to ``probe_path`` means started (any answer does here)."""
        return True

    def start(self, timeout=30, preexec_fn=None):
        for folder in ("user", "output", "input", "temp"):
            os.makedirs(os.path.join(self.workdir, folder), exist_ok=True)
        self._log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=self.workdir, env=self.server_env(), start_new_session=True,
                                        preexec_fn=preexec_fn)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                status, _, _ = self.fetch(self.probe_path, timeout=2)
                if self.ready(status):
                    self.startup_seconds = time.perf_counter() - started
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not start within {timeout} s:\n{self.log()[-3000:]}")

    def fetch(self, path, headers=None, timeout=10):
        """GET with the standard library: (status, headers, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def cli(self, *args, check=True, input=None):
        """Run the package's command line against this server's database."""
        env = self.inherited_env()
        env.update(self.env)
        return subprocess.run([sys.executable, self.package_dir, "--user-directory", self.user_dir, *args],
                              capture_output=True, text=True, check=check, env=env, input=input)

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self):
        self.stop(signal.SIGKILL)

    def restart(self, **kwargs):
        self.stop()
        return self.start(**kwargs)
