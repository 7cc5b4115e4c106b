"""The user guide's curl, Python and JavaScript examples, run as written
against a live default install (only the port is changed to the test
server's, and placeholders like ``{key_id}`` get real values).

JavaScript blocks run with no package at hand (Node's built-in fetch), except
the one written for node-fetch, which gets the node-fetch 2 of tests/js."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

GUIDE = os.path.join(REPO, "docs", "user-guide.md")
# The guide the project started from, committed with the tests.
SEED = os.path.join(REPO, "tests", "fixtures", "seed-user-guide.md")
NODE_MODULES = os.path.join(REPO, "tests", "js", "node_modules")
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(path):
    with open(path, encoding="utf-8") as handle:
        return BLOCK.findall(handle.read())


def uses_node_fetch(code):
    return 'require("node-fetch")' in code


def test_our_guide_keeps_the_seed_examples_unchanged():
    """Every example of the seed guide is still there, as written and in order;
    the guide may add examples between them."""
    ours = iter(blocks(GUIDE))
    missing = [block for block in blocks(SEED) if block not in ours]
    assert not missing, missing


def test_the_javascript_example_needs_no_package_and_the_node_fetch_form_says_which_version():
    """Node 18+ has fetch built in; node-fetch 3 (what a plain npm install gives) is
    ESM-only and breaks require("node-fetch"): the guide must lead with the
    built-in fetch and name node-fetch@2 for the seed's form."""
    javascript = [code for language, code in blocks(GUIDE) if language == "javascript"]
    assert javascript and not uses_node_fetch(javascript[0]), "the first example should use the built-in fetch"
    assert "require(" not in javascript[0] and "import " not in javascript[0]
    text = open(GUIDE, encoding="utf-8").read()
    seed_form = text.index('const fetch = require("node-fetch")')
    assert "npm install node-fetch@2" in text[:seed_form], "say which node-fetch the require form needs"
    with open(os.path.join(REPO, "tests", "js", "package.json"), encoding="utf-8") as handle:
        assert json.load(handle)["dependencies"]["node-fetch"].lstrip("^~=").startswith("2.")


def prepare(code, host, key=None, key_id=None):
    code = code.replace("localhost:8188", f"localhost:{host.port}")
    if key:
        code = code.replace("comfy_your_key_here", key)
    if key_id:
        code = code.replace("{key_id}", key_id)
    return code


def run(language, code, cwd, host):
    env = {k: v for k, v in os.environ.items() if k != "NODE_PATH"}
    env["COMFYUI_URL"] = host.base
    if language == "javascript" and uses_node_fetch(code):
        env["NODE_PATH"] = NODE_MODULES  # as after `npm install node-fetch@2`
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
    assert ran >= 10
    assert (tmp_path / "api_key.txt").read_text().startswith("comfy_")
    creating = [code for _, code in examples if "My API Key" in code and ("POST" in code or "post(" in code)]
    names = [k["name"] for k in host.get("/api/keys").json()["keys"]]
    assert names.count("My API Key") == len(creating) >= 4
    assert "Production Key" in names and "test_api_auth.py" in names
