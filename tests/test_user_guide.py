"""The user guide's curl, Python and JavaScript examples, run as written
against a live default install (only the port is changed to the test
server's, and placeholders like ``{key_id}`` get real values)."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

GUIDE = os.path.join(REPO, "docs", "user-guide.md")
SEED = os.path.join(os.path.dirname(REPO), "shared", "seed", "000_e7745384ed814270.txt")
NODE_MODULES = os.path.join(REPO, "tests", "js", "node_modules")
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(path):
    with open(path, encoding="utf-8") as handle:
        return BLOCK.findall(handle.read())


def test_our_guide_keeps_the_seed_examples_unchanged():
    if not os.path.exists(SEED):
        pytest.skip("shared/seed is not beside this checkout")
    assert blocks(GUIDE) == blocks(SEED)


def prepare(code, host, key=None, key_id=None):
    code = code.replace("localhost:8188", f"localhost:{host.port}")
    if key:
        code = code.replace("comfy_your_key_here", key)
    if key_id:
        code = code.replace("{key_id}", key_id)
    return code


def run(language, code, cwd, host):
    env = dict(os.environ, COMFYUI_URL=host.base, NODE_PATH=NODE_MODULES)
    if language == "bash":
        command = ["bash", "-e", "-c", code]
    elif language == "python":
        command = [sys.executable, "-c", code]
    else:
        command = ["node", "-e", code]
    if language == "bash" and "test_api_auth.py" in code:
        command = [sys.executable, os.path.join(REPO, "test_api_auth.py")]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (code, result.stdout, result.stderr)
    return result.stdout


def test_every_example_in_the_guide_works(fresh_host, tmp_path):
    host = fresh_host
    if shutil.which("node") is None or not os.path.isdir(NODE_MODULES):
        pytest.fail("node and tests/js/node_modules are needed (cd tests/js && npm ci)")
    examples = blocks(GUIDE)
    languages = [language for language, _ in examples]
    assert languages.count("bash") >= 6 and "python" in languages and "javascript" in languages
    key = host.create_key("for the examples")
    ran = 0
    for language, code in examples:
        if language not in ("bash", "python", "javascript"):
            continue
        output = run(language, prepare(code, host, key["api_key"], key["key_id"]), tmp_path, host)
        ran += 1
        if "curl -X POST" in code or ("requests.post" in code) or "createAPIKey" in code:
            assert "comfy_" in output, output                    # a key was created and shown
        if "api/usage" in code:
            assert key["key_id"] in output, output                # the key was accepted
        if "/api/keys/{key_id}" in code:
            assert "usage_stats" in output, output
        if "requests.get('http://localhost:8188/api/keys')" in code:
            assert "Rate Limit: 100/hour" in output
    assert ran >= 9
    assert (tmp_path / "api_key.txt").read_text().startswith("comfy_")
    names = [k["name"] for k in host.get("/api/keys").json()["keys"]]
    assert names.count("My API Key") == 3 and "Production Key" in names and "test_api_auth.py" in names
