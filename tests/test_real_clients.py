"""Real ComfyUI client libraries, installed from the package registries
(requirements-test.txt; tests/js/package.json), each running a workflow to
its end against the stand-in in require mode, with the results coming back
over /ws the way each library waits for them:

* ComfyScript (``comfy-script[client]``): the key as a header of its sessions;
* comfy-api-simplified: HTTP Basic only, the key as the password (also in its
  /ws URL, which the websockets library sends as Basic);
* ``@saintno/comfyui-sdk`` on Node: its ``bearer_token`` credentials;
* Open WebUI's ComfyUI client (``open_webui.utils.images.comfyui``): its key
  field sent as Bearer; left empty (its default) it sends ``Bearer `` with
  nothing after it, which an enable-mode server must take as no credential.

Each client runs in its own process (some patch asyncio or keep threads).
The workflow is EmptyImage -> ImageBlur -> SaveImage: no model file.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, Host

pytestmark = pytest.mark.real_clients

CLIENTS = os.path.join(REPO, "tests", "real_clients")
JS = os.path.join(REPO, "tests", "js")
TIMEOUT = 120


class Servers:
    """A require-mode server with a key, and an enable-mode one whose loopback callers are not trusted."""

    def __init__(self, root):
        self.require = Host(os.path.join(root, "require"), env={"COMFYUI_API_AUTH": "require"})
        self.enable = Host(os.path.join(root, "enable"), env={"COMFYUI_API_AUTH": "enable",
                                                               "COMFYUI_API_AUTH_TRUST_LOCALHOST": "off"})
        for host in (self.require, self.enable):
            os.makedirs(host.user_dir, exist_ok=True)
            host.start()
        self.key = json.loads(self.require.cli("create-key", "--name", "clients", "--json").stdout)
        self.require.restart()  # the key is read at start

    def stop(self):
        for host in (self.require, self.enable):
            host.discard()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    built = Servers(str(tmp_path_factory.mktemp("clients")))
    yield built
    built.stop()


def run_client(command, key, cwd=REPO):
    """Run a client script; its last stdout line is its JSON result."""
    env = dict(os.environ, COMFY_API_KEY=key)
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=env)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def requests_this_hour(host, key):
    response = host.get("/api/usage", headers={"X-API-Key": key["api_key"]})
    assert response.status_code == 200, response.text
    return response.json()["requests_this_hour"]


def assert_in_history(host, key, prefix):
    """The run's image is in ComfyUI's history (read with the same key)."""
    history = host.get("/api/history", headers={"Authorization": f"Bearer {key['api_key']}"}).json()
    saved = [image["filename"] for entry in history.values() for output in entry["outputs"].values()
             for image in output.get("images", [])]
    assert any(name.startswith(prefix) for name in saved), saved


def test_comfy_script_with_the_key_as_a_session_header(servers):
    host, key = servers.require, servers.key
    before = requests_this_hour(host, key)
    result = run_client([sys.executable, os.path.join(CLIENTS, "comfy_script_run.py"), host.base + "/"],
                        key["api_key"])
    # the task only finishes when its socket watcher reads the run's end from /ws
    assert result["images"][0]["filename"].startswith("comfy_script_")
    assert result["pixels"] == [[255, 128, 0]]  # the image, read back through the client's /view call
    assert_in_history(host, key, "comfy_script_")
    assert requests_this_hour(host, key) > before + 3  # object_info, prompt, history, view... all charged


def test_comfy_api_simplified_with_basic_auth(servers):
    host, key = servers.require, servers.key
    before = requests_this_hour(host, key)
    result = run_client([sys.executable, os.path.join(CLIENTS, "comfy_api_simplified_run.py"), host.base],
                        key["api_key"])
    assert result["png"] and any(name.startswith("simplified_") for name in result["images"]), result
    assert "executing" in result["socket_messages"] and "executed" in result["socket_messages"], result
    assert_in_history(host, key, "simplified_")
    assert requests_this_hour(host, key) >= before + 3  # prompt, history, view


def test_comfyui_sdk_on_node_with_bearer_token_credentials(servers):
    host, key = servers.require, servers.key
    assert shutil.which("node"), "Node.js is needed (.ci/run installs it)"
    assert os.path.isdir(os.path.join(JS, "node_modules", "@saintno", "comfyui-sdk")), \
        "run ./test.sh (npm ci in tests/js) first"
    result = run_client(["node", "comfyui_sdk_run.mjs", host.base], key["api_key"], cwd=JS)
    assert result["png"] and result["images"][0]["filename"].startswith("sdk_"), result
    assert result["socketLog"][0] == "Socket opened" and not any("polling" in line for line in result["socketLog"]), \
        result["socketLog"]
    assert {"execution_start", "executing", "executed", "execution_success"} <= set(result["events"]), result["events"]
    assert_in_history(host, key, "sdk_")


def test_open_webui_with_a_key_in_require_mode(servers):
    host, key = servers.require, servers.key
    before = requests_this_hour(host, key)
    result = run_client([sys.executable, os.path.join(CLIENTS, "open_webui_run.py"), host.base], key["api_key"])
    assert result["ok"] and result["png"], result
    assert result["urls"][0].startswith(host.base + "/view?filename=open_webui_"), result
    assert requests_this_hour(host, key) >= before + 4  # /ws, prompt, history, view


def test_open_webui_with_its_key_field_empty_in_enable_mode(servers):
    """Its default: "Authorization: Bearer " on every call, the socket included."""
    result = run_client([sys.executable, os.path.join(CLIENTS, "open_webui_run.py"), servers.enable.base], "")
    assert result["ok"] and result["png"], result


def test_open_webui_with_its_key_field_empty_in_require_mode_is_refused(servers):
    result = run_client([sys.executable, os.path.join(CLIENTS, "open_webui_run.py"), servers.require.base], "")
    assert result == {"ok": False}
    answer = servers.require.get("/api/prompt", headers={"Authorization": "Bearer "})
    assert answer.status_code == 401 and answer.json()["error_code"] == "AUTH_REQUIRED"
