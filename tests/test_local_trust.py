"""Local trust (COMFYUI_API_AUTH_TRUST_LOCALHOST), the one-time setup code and
the environment-managed admin password, attacked over real HTTP.

A TCP forwarder (ssh -R, socat, kubectl port-forward) or a default nginx
``proxy_pass`` makes every client look local: loopback peer, no forwarding
header, whatever ``Host`` the client sends. ``Forwarder`` below is such a
relay, so these tests call the server exactly as a remote client behind one
would.
"""

import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

PASSWORD = "a fine admin password"
SETUP_CODE = re.compile(r"setup code ([0-9A-Z]{4}(?:-[0-9A-Z]{4}){3})")


class Forwarder:
    """A plain TCP relay on a loopback port, as ``ssh -R`` or ``socat`` would be."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def url(self, path):
        # The remote client names the host it thinks it talks to: "localhost".
        return f"http://localhost:{self.port}{path}"

    def close(self):
        self.listener.close()


@pytest.fixture
def forwarder_to():
    made = []

    def make(host):
        made.append(Forwarder(host.port))
        return made[-1]

    yield make
    for forwarder in made:
        forwarder.close()


def setup_code_of(host) -> str:
    found = SETUP_CODE.findall(host.log())
    assert found, host.log()
    return found[-1]


def wait_until(condition, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# ---- bootstrap (the default in enable mode) ---------------------------------------------------

def test_through_a_forwarder_bootstrap_manages_non_admin_keys_only(make_host, forwarder_to):
    host = make_host(local_admin=False)
    # A disabled admin key counts as no admin; re-enabling it would mint one.
    dormant = json.loads(host.cli("create-key", "--name", "dormant admin", "--admin", "--json").stdout)
    host.cli("disable-key", dormant["key_id"])
    host.restart()
    remote = forwarder_to(host)

    created = requests.post(remote.url("/api/keys"), json={"name": "script", "scopes": ["generate"]}, timeout=10)
    assert created.status_code == 200, created.text
    key_id = created.json()["key_id"]
    assert requests.get(remote.url("/api/keys"), timeout=10).status_code == 200
    assert requests.get(remote.url(f"/api/keys/{key_id}"), timeout=10).status_code == 200
    assert requests.patch(remote.url(f"/keys/{key_id}"), json={"rate_limit": 5}, timeout=10).status_code == 200

    refused = [
        requests.post(remote.url("/api/keys"), json={"name": "mine", "scopes": ["admin"]}, timeout=10),
        requests.post(remote.url("/keys"), json={"name": "mine", "rate_limit": 5, "scopes": ["admin"]}, timeout=10),
        requests.patch(remote.url(f"/api/keys/{key_id}"), json={"scopes": ["admin"]}, timeout=10),
        requests.patch(remote.url(f"/api/keys/{dormant['key_id']}"), json={"is_active": True}, timeout=10),
        requests.patch(remote.url(f"/api/keys/{dormant['key_id']}"), json={"name": "x"}, timeout=10),
        requests.delete(remote.url(f"/api/keys/{dormant['key_id']}"), timeout=10),
        requests.put(remote.url("/api/auth/password"), json={"password": PASSWORD}, timeout=10),
        requests.put(remote.url("/auth/password"), json={"password": PASSWORD}, timeout=10),
        requests.get(remote.url("/api/audit"), timeout=10),
        requests.get(remote.url("/api/auth/openapi.json"), timeout=10),
    ]
    for response in refused:
        assert response.status_code == 403, (response.request.method, response.request.url, response.text)
        assert response.json()["error_code"] == "SCOPE_REQUIRED"
        assert "setup code" in response.json()["error"]
    status = requests.get(remote.url("/api/auth/status"), timeout=10).json()
    assert status["trust_localhost"] == "bootstrap" and status["local_bootstrap"] is True
    assert status["is_admin"] is False and status["principal"]["kind"] == "bootstrap"
    keys = {k["key_id"]: k for k in host.get("/api/keys").json()["keys"]}
    assert keys[dormant["key_id"]]["is_active"] is False and keys[key_id]["scopes"] == ["generate"]
    assert not any("admin" in k["scopes"] and k["is_active"] for k in keys.values())
    assert host.get("/api/auth/status").json()["admin_password_set"] is False


@pytest.mark.parametrize("how", ["setup code", "command line password", "command line admin key"])
def test_bootstrap_ends_once_an_admin_exists(make_host, forwarder_to, how):
    host = make_host(local_admin=False, env={"COMFYUI_API_AUTH_REFRESH_INTERVAL": "0.2"})
    remote = forwarder_to(host)
    assert requests.post(remote.url("/api/keys"), json={"name": "early"}, timeout=10).status_code == 200
    if how == "setup code":
        done = requests.post(host.url("/api/auth/setup"), json={"code": setup_code_of(host), "password": PASSWORD})
        assert done.status_code == 200, done.text
    elif how == "command line password":
        host.cli("set-password", "--password-stdin", input=PASSWORD + "\n")
    else:
        host.cli("create-key", "--name", "ops", "--admin")
    wait_until(lambda: requests.get(remote.url("/api/keys"), timeout=10).status_code == 401)
    for method, path, body in (("get", "/api/keys", None), ("post", "/api/keys", {"name": "late"}),
                               ("delete", "/api/keys/nokey", None), ("put", "/api/auth/password", {"password": "x" * 9})):
        response = getattr(requests, method)(remote.url(path), json=body, timeout=10)
        assert response.status_code == 401, (method, path, response.text)
        assert "call from this machine" not in response.json()["error"]
    status = requests.get(remote.url("/api/auth/status"), timeout=10).json()
    assert status["local_bootstrap"] is False and status["authenticated"] is False
    assert status["setup_available"] is False


def test_trust_localhost_on_makes_local_requests_admin(make_host, forwarder_to):
    host = make_host(local_admin=False, env={"COMFYUI_API_AUTH_TRUST_LOCALHOST": "on"})
    remote = forwarder_to(host)  # the operator's choice: then a forwarder hands out admin, as documented
    made = requests.post(remote.url("/api/keys"), json={"name": "ops", "scopes": ["admin"]}, timeout=10)
    assert made.status_code == 200 and made.json()["scopes"] == ["admin"]
    assert requests.put(remote.url("/api/auth/password"), json={"password": PASSWORD}, timeout=10).status_code == 200
    status = requests.get(remote.url("/api/auth/status"), timeout=10).json()
    assert status["trust_localhost"] == "on" and status["is_admin"] is True and status["local_bootstrap"] is False


@pytest.mark.parametrize("value, expected", [("off", 401), ("false", 401), ("0", 401), ("true", 200), ("yes", 200)])
def test_trust_localhost_values_old_and_new(make_host, value, expected):
    host = make_host(local_admin=False, env={"COMFYUI_API_AUTH_TRUST_LOCALHOST": value})
    response = host.post("/api/keys", json={"name": "x", "scopes": ["admin"]})
    assert response.status_code == expected, response.text
    assert host.get("/api/auth/status").json()["trust_localhost"] == ("off" if expected == 401 else "on")


def test_require_mode_trusts_nothing_local_by_default(make_host):
    host = make_host(local_admin=False, env={"COMFYUI_API_AUTH": "require"})
    assert host.get("/api/auth/status").json()["trust_localhost"] == "off"
    assert host.post("/api/keys", json={"name": "x"}).status_code == 401
    assert setup_code_of(host)  # the way in on a fresh locked server


def test_bootstrap_in_require_mode_is_key_management_only(make_host):
    host = make_host(local_admin=False, env={"COMFYUI_API_AUTH": "require",
                                             "COMFYUI_API_AUTH_TRUST_LOCALHOST": "bootstrap"})
    assert host.post("/api/keys", json={"name": "x"}).status_code == 200
    assert host.get("/api/system_stats").status_code == 401  # not a free pass to ComfyUI itself
    assert host.get("/api/usage").status_code == 401


# ---- the setup code ------------------------------------------------------------------------------

def test_setup_code_is_printed_and_sets_the_password_once(make_host):
    host = make_host(local_admin=False)
    log = host.log()
    line = next(line for line in log.splitlines() if "no admin yet" in line)
    assert f"open http://127.0.0.1:{host.port}/login and enter setup code" in line
    assert "set-password" in line
    code = setup_code_of(host)
    assert len(code.replace("-", "")) == 16  # 80 bits
    assert host.get("/api/auth/status").json()["setup_available"] is True

    wrong = host.post("/api/auth/setup", json={"code": "0000-0000-0000-0000", "password": PASSWORD})
    assert wrong.status_code == 401 and wrong.json()["error_code"] == "INVALID_SETUP_CODE"
    short = host.post("/api/auth/setup", json={"code": code, "password": "short"})
    assert short.status_code == 400 and short.json()["field"] == "password"
    assert host.post("/api/auth/setup", json={"code": code, "password": PASSWORD, "admin": True}).status_code == 400

    browser = requests.Session()
    done = browser.post(host.url("/api/auth/setup"), json={"code": code.lower().replace("-", " "), "password": PASSWORD})
    assert done.status_code == 200, done.text
    assert done.json()["kind"] == "admin" and "comfyui_api_auth" in done.cookies
    assert browser.get(host.url("/api/auth/status")).json()["is_admin"] is True
    assert browser.get(host.url("/api/audit")).status_code == 200  # signed in as admin

    again = requests.post(host.url("/api/auth/setup"), json={"code": code, "password": "another password"})
    assert again.status_code == 409 and again.json()["error_code"] == "SETUP_NOT_AVAILABLE"
    assert requests.post(host.url("/api/auth/login"), json={"password": PASSWORD}).status_code == 200
    assert requests.post(host.url("/api/auth/login"), json={"password": "another password"}).status_code == 401
    status = host.get("/api/auth/status").json()
    assert status["setup_available"] is False and status["admin_password_set"] is True
    assert code not in json.dumps(browser.get(host.url("/api/audit")).json())

    host.restart()
    assert "no admin yet" not in host.log().split("mode enable")[-1]  # an admin exists: no new code


def test_the_setup_code_is_not_served_with_comfyuis_logs(make_host, forwarder_to):
    """ComfyUI serves its captured console at /internal/logs (and to /ws
    subscribers), to anyone in enable mode: the code goes to the terminal only."""
    host = make_host(local_admin=False)
    code = setup_code_of(host)  # in the process's terminal output
    remote = forwarder_to(host)
    for path in ("/internal/logs", "/internal/logs/raw"):
        response = requests.get(remote.url(path), headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
        assert response.status_code == 200, path
        assert "api-auth" in response.text, path  # the package's other lines are there
        assert code not in response.text and code.replace("-", "") not in response.text, path


def test_a_burst_of_right_setup_codes_sets_the_password_once(make_host):
    host = make_host(local_admin=False)
    code = setup_code_of(host)
    passwords = [f"burst password {i:02d}" for i in range(16)]

    def attempt(password):
        return requests.post(host.url("/api/auth/setup"), json={"code": code, "password": password}, timeout=30)

    with ThreadPoolExecutor(len(passwords)) as pool:
        answers = list(pool.map(attempt, passwords))
    winners = [password for password, answer in zip(passwords, answers) if answer.status_code == 200]
    assert len(winners) == 1, [answer.status_code for answer in answers]
    assert all(answer.status_code == 409 for answer in answers if answer.status_code != 200)
    assert requests.post(host.url("/api/auth/login"), json={"password": winners[0]}).status_code == 200


def test_wrong_setup_codes_are_throttled_like_sign_ins(make_host):
    host = make_host(local_admin=False, env={"COMFYUI_API_AUTH_LOGIN_ATTEMPTS": "3"})
    code = setup_code_of(host)
    for guess in ("AAAA-AAAA-AAAA-AAAA", "BBBB-BBBB-BBBB-BBBB", "CCCC-CCCC-CCCC-CCCC"):
        assert host.post("/api/auth/setup", json={"code": guess, "password": PASSWORD}).status_code == 401
    blocked = host.post("/api/auth/setup", json={"code": code, "password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    # the same throttle as sign-ins: guessing codes spends password attempts too
    assert host.post("/api/auth/login", json={"password": PASSWORD}).status_code == 429
    assert host.get("/api/auth/status").json()["setup_available"] is True  # the code was not spent


def test_no_setup_code_when_an_admin_exists(make_host):
    host = make_host(local_admin=False, env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    assert "setup code" not in host.log()
    response = host.post("/api/auth/setup", json={"code": "AAAA-AAAA-AAAA-AAAA", "password": PASSWORD + "!"})
    assert response.status_code == 409


# ---- the admin password from the environment ------------------------------------------------------

def test_an_environment_password_is_managed_there(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})  # local admin: may call the route
    changed = host.put("/api/auth/password", json={"password": "a changed password"})
    assert changed.status_code == 409 and changed.json()["error_code"] == "PASSWORD_MANAGED_BY_ENVIRONMENT"
    status = host.get("/api/auth/status").json()
    assert status["admin_password_managed"] is True and status["admin_password_set"] is True
    assert "COMFYUI_API_AUTH_ADMIN_PASSWORD" in changed.json()["error"]
    assert host.put("/api/auth/password", json={"password": "short"}).status_code == 400  # bad input stays 400
    refused = host.cli("set-password", "--password-stdin", input="a changed password\n", check=False)
    assert refused.returncode != 0 and "managed by the environment" in refused.stderr
    host.restart()
    assert requests.post(host.url("/api/auth/login"), json={"password": PASSWORD}).status_code == 200
    assert requests.post(host.url("/api/auth/login"), json={"password": "a changed password"}).status_code == 401


def test_without_the_variable_the_password_is_changed_in_the_panel(host):
    assert host.get("/api/auth/status").json()["admin_password_managed"] is False
    assert host.put("/api/auth/password", json={"password": PASSWORD}).status_code == 200
    assert requests.post(host.url("/api/auth/login"), json={"password": PASSWORD}).status_code == 200
