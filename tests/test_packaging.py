"""Packaging for ComfyUI-Manager and the Comfy Registry."""

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
import tomllib

import pytest
import requests

from browser_support import launch_chromium
from conftest import HOST_DIR, REPO, free_port
from repo_copy import copy_of_the_repository


def pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)


def requirement_lines():
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith("#")]


def test_registry_metadata_is_complete_and_in_step_with_requirements():
    data = pyproject()
    project = data["project"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]{0,99}", project["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"] and project["license"]
    assert os.path.exists(os.path.join(REPO, project["license"]["file"]))
    assert sorted(project["dependencies"]) == sorted(requirement_lines())
    assert project["urls"]["Repository"]
    comfy = data["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"]
    assert os.path.exists(os.path.join(REPO, comfy["Icon"]))
    # WEB_DIRECTORY is set in __init__.py; [tool.comfy] web as well would load the panel twice
    assert "web" not in comfy
    with open(os.path.join(REPO, "__init__.py"), encoding="utf-8") as handle:
        assert 'WEB_DIRECTORY = "./web"' in handle.read()


def test_web_holds_only_extension_modules():
    """ComfyUI imports every .js under web/: no tests or vendored files there."""
    names = [name for _, _, files in os.walk(os.path.join(REPO, "web")) for name in files if name.endswith(".js")]
    assert names and all(name.startswith("api-keys") for name in names), names


# ---- the modules under web/ as ComfyUI loads them ---------------------------------------------

ENTRY = "api-keys.js"  # the one module that registers the extension
STUB_APP = """export const app = {
  registerExtension(extension) { window.__effects.push(`app.registerExtension ${extension?.name}`); },
};"""
STUB_API = """export const api = {
  addEventListener(type) { window.__effects.push(`api.addEventListener ${type}`); },
  fetchApi(path) { window.__effects.push(`api.fetchApi ${path}`); return Promise.reject(new Error("stub")); },
};"""
# Everything a module could do to the page when imported, noted in window.__effects.
SPIES = """() => {
  const effects = window.__effects = [];
  const spy = (owner, name, label) => {
    const original = owner[name];
    owner[name] = function (...args) {
      effects.push(`${label} ${typeof args[0] === "string" ? args[0] : ""}`.trim());
      return original.apply(this, args);
    };
  };
  spy(EventTarget.prototype, "addEventListener", "addEventListener");
  spy(window, "fetch", "fetch");
  spy(XMLHttpRequest.prototype, "open", "XMLHttpRequest.open");
  spy(window, "setTimeout", "setTimeout");
  spy(window, "setInterval", "setInterval");
  spy(window, "requestAnimationFrame", "requestAnimationFrame");
  spy(window, "queueMicrotask", "queueMicrotask");
  spy(customElements, "define", "customElements.define");
  spy(Storage.prototype, "setItem", "storage.setItem");
  spy(Node.prototype, "appendChild", "appendChild");
  spy(Element.prototype, "append", "append");
  const Socket = window.WebSocket;
  window.WebSocket = function (...args) { effects.push("WebSocket"); return new Socket(...args); };
}"""
PAGE_STATE = """() => ({
  html: document.documentElement.outerHTML,
  title: document.title,
  cookie: document.cookie,
  globals: Object.getOwnPropertyNames(window).filter((name) => name !== "__effects").sort(),
})"""


class _WebDir(http.server.SimpleHTTPRequestHandler):
    """web/ at /extensions/comfyui-api-auth/, stubs of ComfyUI's app.js and api.js, a blank page at /."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        stubs = {"/": ("text/html", "<!doctype html><html><head><title>blank</title></head><body></body></html>"),
                 "/scripts/app.js": ("text/javascript", STUB_APP), "/scripts/api.js": ("text/javascript", STUB_API)}
        if self.path in stubs:
            kind, text = stubs[self.path]
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        prefix = "/extensions/comfyui-api-auth/"
        if not self.path.startswith(prefix):
            self.send_error(404)
            return
        self.path = "/" + self.path[len(prefix):]
        super().do_GET()


@pytest.fixture
def web_server():
    handler = functools.partial(_WebDir, directory=os.path.join(REPO, "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _import_on_a_blank_page(browser, base, name):
    """What importing web/<name> does to a blank page: (effects noted, page before, page after)."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base + "/")
    page.evaluate(SPIES)
    before = page.evaluate(PAGE_STATE)
    exports = page.evaluate("async (url) => Object.keys(await import(url)).sort()",
                            f"{base}/extensions/comfyui-api-auth/{name}")
    page.wait_for_timeout(50)  # anything it scheduled would have run
    effects = page.evaluate("() => window.__effects")
    after = page.evaluate(PAGE_STATE)
    page.close()
    assert not errors, (name, errors)
    return exports, effects, before, after


@pytest.mark.browser
def test_only_the_entry_module_does_anything_when_imported(web_server):
    """ComfyUI's front end imports every file GET /extensions lists, that is every
    .js under web/. Every module but the entry must only export: imported on a
    blank page (with stand-ins of ComfyUI's app.js and api.js that note their
    use) it registers, listens, fetches, schedules and changes nothing. The
    entry module, imported the same way, is seen registering the extension."""
    names = sorted(name for name in os.listdir(os.path.join(REPO, "web")) if name.endswith(".js"))
    assert ENTRY in names and len(names) > 2, names
    with launch_chromium() as browser:
        exports, effects, before, after = _import_on_a_blank_page(browser, web_server, ENTRY)
        assert effects == ["app.registerExtension comfyui-api-auth.ApiKeysPanel"], effects  # the spies see it
        for name in names:
            if name == ENTRY:
                continue
            exports, effects, before, after = _import_on_a_blank_page(browser, web_server, name)
            assert exports, f"{name} exports nothing"
            assert effects == [], (name, effects)
            assert after == before, name


def test_manager_style_install_into_a_fresh_environment_then_start(tmp_path):
    """ComfyUI-Manager installs requirements.txt line by line, then ComfyUI starts."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    for line in requirement_lines():
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", line],
                       check=True, timeout=300)
    for folder in ("user", "input", "output", "temp"):
        (tmp_path / folder).mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_API_AUTH")}
    process = subprocess.Popen([python, os.path.join(HOST_DIR, "main.py"), "--port", str(port),
                                "--user-directory", str(tmp_path / "user"), "--input-directory", str(tmp_path / "input"),
                                "--output-directory", str(tmp_path / "output"), "--temp-directory", str(tmp_path / "temp"),
                                "--custom-node", REPO],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        import time
        deadline = time.time() + 30
        while True:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/api/auth/status", timeout=1)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.time() < deadline, "did not start"
                time.sleep(0.1)
        assert status.json()["mode"] == "enable"
        created = requests.post(f"http://127.0.0.1:{port}/api/keys", json={"name": "fresh"})
        assert created.status_code == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0]
    assert "IMPORT FAILED" not in output, output


def test_the_tests_run_in_a_clone_named_comfyui_api_auth(tmp_path):
    """The README's, run.sh's and ComfyUI-Manager's folder name is no Python module
    name: pytest must still run the suite there (it used to import the root
    __init__.py as a lone module and fail every test on its relative imports)."""
    clone = copy_of_the_repository(tmp_path / "comfyui-api-auth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/test_core_rules.py::test_generated_keys_are_well_formed_and_unique",
         "tests/test_keys_api.py::test_changes_apply_to_the_very_next_request_of_a_key_already_in_use",
         # reads a document: it must be in the repository, not beside it (no skip)
         "tests/test_user_guide.py::test_our_guide_keeps_the_seed_examples_unchanged"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 passed" in result.stdout and "skipped" not in result.stdout, result.stdout


def spy_python(folder, log):
    """A python3 that only notes its arguments: shows what run.sh would install or start."""
    folder.mkdir()
    spy = folder / "python3"
    spy.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    spy.chmod(0o755)
    return str(spy)


def run_sh(here, *args, path_first, env=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI")}
    clean["PATH"] = path_first + os.pathsep + clean["PATH"]
    clean.update(env or {})
    return subprocess.run(["bash", os.path.join(here, "run.sh"), *args], env=clean,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("first", ["/path/with/typo", "ComfyUl", "{empty folder}", "", "{file}"])
def test_run_sh_stops_on_a_first_argument_that_is_no_comfyui_checkout(tmp_path, first):
    """A mistyped ComfyUI path must not fall through to the bundled stand-in."""
    here = copy_of_the_repository(tmp_path / "comfyui-api-auth")  # no .venv: nothing to start with
    (tmp_path / "empty folder").mkdir()
    (tmp_path / "file").write_text("")
    first = first.format(**{"empty folder": str(tmp_path / "empty folder"), "file": str(tmp_path / "file")})
    log = tmp_path / "python-calls.log"
    result = run_sh(here, first, "--port", "1", path_first=os.path.dirname(spy_python(tmp_path / "bin", log)))
    assert result.returncode != 0
    assert f"not a ComfyUI checkout: {first or '(an empty argument)'}" in result.stderr, result.stderr
    assert not log.exists(), "run.sh ran python: " + log.read_text()
    assert not (here / ".venv").exists() and not (here / ".demo").exists()


def test_run_sh_with_a_comfyui_checkout_installs_into_its_python_links_and_starts_it(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    log = tmp_path / "python-calls.log"
    python = spy_python(tmp_path / "bin", log)
    result = run_sh(REPO, str(comfy), "--port", "8190", path_first="/nonexistent",
                    env={"COMFYUI_PYTHON": python})
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[:-1] == [f"-m pip install --quiet {line}" for line in requirement_lines()]
    assert calls[-1] == "main.py --port 8190"
    assert os.path.realpath(comfy / "custom_nodes" / "comfyui-api-auth") == os.path.realpath(REPO)
