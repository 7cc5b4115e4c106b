"""The ComfyUI stand-in held to real ComfyUI.

``tests/fingerprint/comfyui-0.3.64.json`` is the surface of real ComfyUI
0.3.64 that the package relies on, as ``tests/fingerprint/probe`` (a custom
node) and a small workflow driven over HTTP and WebSocket describe it. This
test takes the same fingerprint from the stand-in and compares.

* In CI: the stand-in against the committed file. A difference fails, with
  the differing entries listed, unless ``DELIBERATE`` below names it.
* With ``COMFYUI_DIR`` (and ``COMFYUI_PYTHON`` if ComfyUI's Python is not
  ``$COMFYUI_DIR/venv`` or ``.venv``): also a fresh fingerprint of that real
  ComfyUI, compared with the committed one. ``FINGERPRINT_UPDATE=1`` writes
  it instead (to ``comfyui-<version>.json``).

Both servers start the same way: ``--base-directory`` a temporary folder whose
``custom_nodes/`` holds only the probe and this repository (as
``comfyui-api-auth``), so no other custom node (ComfyUI-Manager) is loaded
and nothing in the ComfyUI install is changed.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest
import requests

from conftest import HOST_DIR, REPO, free_port

FINGERPRINT_DIR = os.path.join(REPO, "tests", "fingerprint")
COMMITTED = os.path.join(FINGERPRINT_DIR, "comfyui-0.3.64.json")
PROBE = os.path.join(FINGERPRINT_DIR, "probe")

# Where the stand-in knowingly differs from ComfyUI 0.3.64: a fingerprint
# entry (a path into the JSON, or the start of one) -> why. Keep it short:
# an entry that no longer differs fails the test, so it must be removed.
DELIBERATE = {}


# ---- taking a fingerprint -------------------------------------------------------------------------

def prepare_base(base):
    """A ComfyUI base directory whose custom_nodes hold only the probe and the package."""
    custom_nodes = os.path.join(base, "custom_nodes")
    os.makedirs(custom_nodes)
    os.symlink(PROBE, os.path.join(custom_nodes, "zz_fingerprint_probe"))
    os.symlink(REPO, os.path.join(custom_nodes, "comfyui-api-auth"))
    for folder in ("user", "input", "output", "temp"):
        os.makedirs(os.path.join(base, folder))


def start_server(command, cwd, log_path, port, timeout):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_API_AUTH")}
    env["PYTHONUNBUFFERED"] = "1"
    log = open(log_path, "ab")
    process = subprocess.Popen(command + ["--listen", "127.0.0.1", "--port", str(port)], cwd=cwd, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    process.log = log
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n" + open(log_path).read()[-3000:])
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/fingerprint_probe", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    stop_server(process)
    raise RuntimeError("server did not answer:\n" + open(log_path).read()[-3000:])


def stop_server(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    process.log.close()


def message_summary(message):
    """A WebSocket message as 'type: data keys', plus the node for executing/executed."""
    kind, data = message.get("type"), message.get("data") or {}
    text = f"{kind}: {' '.join(sorted(data))}"
    if kind in ("executing", "executed"):
        text += f" node={data.get('node')}"
    if kind == "progress_state":
        text += " " + ",".join(f"{node}={state.get('state')}" for node, state in sorted(data["nodes"].items()))
    return text


def item_shape(item):
    """A queue item (a JSON list) as its length, element types and extra_data keys."""
    return {"length": len(item), "types": [type(value).__name__ for value in item],
            "extra_data keys": sorted(item[3])}


async def read_until(socket, done, timeout=20):
    """Messages from a socket until ``done(message)`` is true (that one included)."""
    messages = []
    async with asyncio.timeout(timeout):
        while True:
            received = await socket.receive()
            if received.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(received.data)
            messages.append(message)
            if done(message):
                return messages


async def drain(socket, quiet=0.5):
    messages = []
    while True:
        try:
            received = await socket.receive(timeout=quiet)
        except asyncio.TimeoutError:
            return messages
        if received.type == aiohttp.WSMsgType.TEXT:
            messages.append(json.loads(received.data))


WORKFLOW = {
    "1": {"class_type": "PrimitiveString", "inputs": {"value": "fingerprint"}},
    "2": {"class_type": "FingerprintProbeShow", "inputs": {"text": ["1", 0], "hold": True}},
}


async def run_workflow(base):
    """Queue a two-node workflow over HTTP and record what ComfyUI shows of it."""
    run = {}
    async with aiohttp.ClientSession() as session:
        submitter = await session.ws_connect(base + "/ws?clientId=fp-submitter")
        other = await session.ws_connect(base + "/ws?clientId=fp-other")
        first = await read_until(submitter, lambda m: True)
        run["first message on connect"] = message_summary(first[0])
        await submitter.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        reply = await read_until(submitter, lambda m: m["type"] == "feature_flags")
        run["feature_flags reply"] = message_summary(reply[-1])
        await read_until(other, lambda m: True)

        body = {"prompt": WORKFLOW, "client_id": "fp-submitter",
                "extra_data": {"api_key_comfy_org": "probe-secret", "extra_pnginfo": {"probe": 1}}}
        async with session.post(base + "/api/prompt", json=body) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
        run["POST /prompt answer keys"] = sorted(answer)
        prompt_id = answer["prompt_id"]

        for _ in range(200):  # the node holds the prompt until released
            async with session.get(base + "/api/queue") as response:
                queue = await response.json()
            if queue["queue_running"]:
                break
            await asyncio.sleep(0.05)
        run["GET /queue keys"] = sorted(queue)
        # The item as ComfyUI keeps it, which is what its GET /queue answers; the
        # package (loaded here) takes secrets out of its own answer, so ask the probe.
        async with session.get(base + "/api/fingerprint_probe/running") as response:
            run["GET /queue running item"] = item_shape((await response.json())[0])
        async with session.post(base + "/api/fingerprint_probe/release") as response:
            assert response.status == 200

        messages = await read_until(submitter, lambda m: m["type"] == "executing" and m["data"]["node"] is None)
        run["to the submitting socket"] = [message_summary(m) for m in messages]
        run["to another socket"] = [message_summary(m) for m in await drain(other)]
        await submitter.close()
        await other.close()

        async with session.get(f"{base}/api/history/{prompt_id}") as response:
            entry = (await response.json())[prompt_id]
        async with session.get(base + "/api/fingerprint_probe/seen") as response:
            run["seen inside the node"] = await response.json()
    run["history entry"] = {
        "keys": sorted(entry),
        "prompt": item_shape(entry["prompt"]),
        "status": {"keys": sorted(entry["status"]), "status_str": entry["status"]["status_str"],
                   "messages": [m[0] for m in entry["status"]["messages"]]},
        "outputs": {node: sorted(output) for node, output in entry["outputs"].items()},
        "meta": {node: sorted(meta) for node, meta in entry["meta"].items()},
    }
    return run


def take_fingerprint(command, cwd, base_dir, timeout):
    port = free_port()
    process = start_server(command + ["--base-directory", base_dir], cwd,
                           os.path.join(os.path.dirname(base_dir), "server.log"), port, timeout)
    try:
        base = f"http://127.0.0.1:{port}"
        fingerprint = requests.get(base + "/api/fingerprint_probe", timeout=10).json()
        fingerprint["workflow run"] = asyncio.run(run_workflow(base))
        return fingerprint
    finally:
        stop_server(process)


def standin_fingerprint(base, *extra_args):
    prepare_base(base)
    return take_fingerprint([sys.executable, os.path.join(HOST_DIR, "main.py"), *extra_args], base, base, timeout=30)


def comfyui_python(comfyui_dir):
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    for venv in ("venv", ".venv"):
        candidate = os.path.join(comfyui_dir, venv, "bin", "python")
        if os.path.exists(candidate):
            return candidate
    return "python3"


def real_fingerprint(tmp_path, comfyui_dir):
    base = str(tmp_path / "real")
    prepare_base(base)
    command = [comfyui_python(comfyui_dir), os.path.join(comfyui_dir, "main.py"), "--cpu",
               # its own database, not the install's user/comfyui.db
               "--database-url", "sqlite:///" + os.path.join(base, "user", "comfyui.db")]
    return take_fingerprint(command, comfyui_dir, base, timeout=240)


# ---- comparing ------------------------------------------------------------------------------------

def flatten(value, prefix=""):
    """{"a": {"b": 1}} -> {"a > b": 1}; lists and scalars are leaves."""
    if isinstance(value, dict) and value:
        out = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix} > {key}" if prefix else str(key)))
        return out
    return {prefix: value}


def differences(expected, actual):
    """{path: (expected, actual)} for every leaf that differs; a missing side is '(absent)'."""
    left, right = flatten(expected), flatten(actual)
    return {path: (left.get(path, "(absent)"), right.get(path, "(absent)"))
            for path in sorted(set(left) | set(right)) if left.get(path, "(absent)") != right.get(path, "(absent)")}


def deliberate(path):
    return next((entry for entry in DELIBERATE if path == entry or path.startswith(entry + " > ")), None)


def report(diff, left_name, right_name):
    lines = [f"{len(diff)} differences ({left_name} | {right_name}):"]
    for path, (left, right) in diff.items():
        lines.append(f"  {path}\n      {left_name}: {json.dumps(left)}\n      {right_name}: {json.dumps(right)}")
    return "\n".join(lines)


def load_committed():
    with open(COMMITTED, encoding="utf-8") as handle:
        return json.load(handle)


def write_fingerprint(path, fingerprint):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(fingerprint, handle, indent=1, sort_keys=True)
        handle.write("\n")


# ---- the tests ------------------------------------------------------------------------------------

def test_the_standin_matches_the_committed_fingerprint_of_comfyui_0_3_64(tmp_path):
    committed = load_committed()
    assert committed["comfyui_version"] == "0.3.64"
    diff = differences(committed, standin_fingerprint(str(tmp_path / "standin")))
    unexplained = {path: pair for path, pair in diff.items() if deliberate(path) is None}
    assert not unexplained, report(unexplained, "ComfyUI 0.3.64", "stand-in")
    stale = [entry for entry in DELIBERATE if not any(deliberate(path) == entry for path in diff)]
    assert not stale, f"these DELIBERATE entries no longer differ; remove them: {stale}"


NEWER_FOLDER_PATHS = {"folder_paths > present > get_system_user_directory": (False, True),
                      "folder_paths > present > get_public_user_directory": (False, True),
                      "folder_paths > present > SYSTEM_USER_PREFIX": (False, True),
                      "folder_paths > get_system_user_directory('api_auth') under user dir": (None, "__api_auth")}


def test_with_newer_comfyuis_system_user_directory_the_package_keeps_its_data_in_the_same_place(tmp_path):
    """ComfyUI after 0.3.64 has folder_paths.get_system_user_directory(): the package then
    asks it for its folder (runtime.default_data_dir). Emulated, that is the only change
    to the surface, and the database lands where 0.3.64 has it too: user/__api_auth."""
    base = str(tmp_path / "newer")
    diff = differences(load_committed(), standin_fingerprint(base, "--emulate-system-users"))
    assert {path: pair for path, pair in diff.items() if deliberate(path) is None} == NEWER_FOLDER_PATHS
    assert os.path.isfile(os.path.join(base, "user", "__api_auth", "auth.db"))


def test_with_newer_comfyuis_system_users_no_one_can_become_one(make_host):
    host = make_host(extra_args=["--multi-user", "--emulate-system-users"])
    refused = host.post("/api/users", json={"username": "__api_auth"})
    assert refused.status_code == 400 and "System User" in refused.json()["error"]
    assert host.post("/api/users", json={"username": "alice"}).status_code == 200


NEWER_JOB_ROUTES = {
    **{f"routes > core > {path} > {field}": ("(absent)", value)
       for path, methods in (("/api/jobs", "GET HEAD"), ("/api/jobs/{job_id}", "GET HEAD"),
                             ("/api/jobs/cancel", "POST"), ("/api/jobs/{job_id}/cancel", "POST"))
       for field, value in (("api_twin", True), ("methods", methods))},
    "workflow run > GET /queue running item > extra_data keys": (
        ["api_key_comfy_org", "client_id", "extra_pnginfo"], ["api_key_comfy_org", "client_id", "create_time", "extra_pnginfo"]),
    "workflow run > history entry > prompt > extra_data keys": (
        ["client_id", "extra_pnginfo"], ["client_id", "create_time", "extra_pnginfo"]),
}


def test_with_newer_comfyuis_job_routes_only_those_and_create_time_are_added(tmp_path):
    """--emulate-jobs-api (newer ComfyUI's /api/jobs, registered with their /api, so
    twinned again, among the plain routes; extra_data.create_time) changes nothing else."""
    diff = differences(load_committed(), standin_fingerprint(str(tmp_path / "jobs"), "--emulate-jobs-api"))
    unexplained = {path: pair for path, pair in diff.items() if deliberate(path) is None}
    order = unexplained.pop("routes > resource_order")
    assert unexplained == {path: tuple(pair) for path, pair in NEWER_JOB_ROUTES.items()}
    # "/api/jobs..." are core routes added among the plain ones (before /history): a "core api" group there.
    assert order == (order[0], order[0][:5] + ["core api", "core plain"] + order[0][5:])


@pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="set COMFYUI_DIR to a real ComfyUI to compare it")
def test_a_real_comfyui_matches_the_committed_fingerprint(tmp_path):
    fresh = real_fingerprint(tmp_path, os.path.abspath(os.environ["COMFYUI_DIR"]))
    version = fresh["comfyui_version"]
    target = os.path.join(FINGERPRINT_DIR, f"comfyui-{version}.json")
    if os.environ.get("FINGERPRINT_UPDATE") == "1":
        write_fingerprint(target, fresh)
        return
    diff = differences(load_committed(), fresh)
    assert not diff, (f"ComfyUI {version} at $COMFYUI_DIR differs from the committed 0.3.64 fingerprint "
                      f"(FINGERPRINT_UPDATE=1 writes {os.path.basename(target)}):\n"
                      + report(diff, "committed 0.3.64", f"ComfyUI {version}"))
