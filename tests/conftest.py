"""Fixtures: the package loaded as ComfyUI would load it, and live servers.

``host`` starts the ComfyUI stand-in (``tests/comfyui_host``) as a real
process on a free loopback port with this repository as a custom node, so
tests speak real HTTP, and can kill -9 and restart it.
"""

import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_DIR = os.path.join(REPO, "tests", "comfyui_host")
PACKAGE = "comfyui_api_auth"


def load_package():
    """Import the repository as a package, the way ComfyUI imports custom nodes."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, os.path.join(REPO, "__init__.py"), submodule_search_locations=[REPO])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def package_module(name: str):
    load_package()
    return importlib.import_module(f"{PACKAGE}.{name}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Host:
    """One ComfyUI stand-in process with the package installed."""

    def __init__(self, workdir, env=None, listen="127.0.0.1", extra_args=()):
        self.workdir = str(workdir)
        self.user_dir = os.path.join(self.workdir, "user")
        self.env = dict(env or {})
        self.listen = listen
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.process = None
        self.log_path = os.path.join(self.workdir, "host.log")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self, timeout=30):
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_API_AUTH")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        for folder in ("user", "output", "input", "temp"):
            os.makedirs(os.path.join(self.workdir, folder), exist_ok=True)
        command = [sys.executable, os.path.join(HOST_DIR, "main.py"), "--listen", self.listen,
                   "--port", str(self.port), "--user-directory", self.user_dir,
                   "--output-directory", os.path.join(self.workdir, "output"),
                   "--input-directory", os.path.join(self.workdir, "input"),
                   "--temp-directory", os.path.join(self.workdir, "temp"),
                   "--custom-node", REPO, *self.extra_args]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=self.workdir, env=env, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"host exited with {self.process.returncode}:\n{self.log()}")
            try:
                requests.get(self.url("/api/auth/status"), timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("host did not start:\n" + self.log())

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def kill(self):
        self.stop(signal.SIGKILL)

    def restart(self, **kwargs):
        self.stop()
        return self.start(**kwargs)

    # small helpers for readable tests
    def get(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.get(self.url(path), **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.post(self.url(path), **kw)

    def patch(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.patch(self.url(path), **kw)

    def delete(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.delete(self.url(path), **kw)

    def create_key(self, name="test key", headers=None, **fields):
        response = self.post("/api/keys", json={"name": name, **fields}, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def make_host(tmp_path):
    hosts = []

    def make(env=None, **kwargs):
        host = Host(tmp_path / f"host{len(hosts)}", env=env, **kwargs)
        os.makedirs(host.workdir, exist_ok=True)
        hosts.append(host)
        return host.start()

    yield make
    for host in hosts:
        host.stop()


@pytest.fixture
def host(make_host):
    """Default local install: enable mode, loopback, local requests are admin."""
    return make_host()
