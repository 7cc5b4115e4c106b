"""How clients that cannot send ``Authorization: Bearer <key>`` present a key,
over real HTTP in both modes and on both route twins:

* HTTP Basic with the key as the password (comfy-api-simplified, comfy-catapult);
  a Basic header whose password is not one of our keys is someone else's
  (an nginx ``auth_basic`` in front) and is ignored;
* ``Authorization: Bearer`` with nothing after it (Open WebUI with its key
  field empty) is no credential;
* ``?token=<key>`` in the URL with COMFYUI_API_AUTH_QUERY_TOKEN=on (browsers
  cannot put a header on a WebSocket or an ``<img src>``): accepted, and taken
  out of the URL before ComfyUI's handlers, logs, queue or history see it.
"""

import asyncio
import base64
import http.client
import json
import os
import time
import uuid

import aiohttp
import pytest

from conftest import REPO, Host, package_module

URL_LOGGER = os.path.join(REPO, "tests", "fixtures", "url_logging_node.py")
TWINS = ("/api", "")
BEARER_CHALLENGE = 'Bearer realm="ComfyUI"'
UNKNOWN_KEY = package_module("core.keys").generate_key()  # well formed, but no such key: INVALID_KEY


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Fleet:
    """One host per (mode, query token setting), local trust off, keys made by the command line."""

    def __init__(self, root):
        self.hosts, self.keys = {}, {}
        for mode in ("enable", "require"):
            for query in ("off", "on"):
                env = {"COMFYUI_API_AUTH": mode, "COMFYUI_API_AUTH_TRUST_LOCALHOST": "off",
                       "COMFYUI_API_AUTH_QUERY_TOKEN": query}
                host = Host(os.path.join(root, f"{mode}-{query}"), env=env,
                            extra_args=("--custom-node", URL_LOGGER, "--verbose", "DEBUG"))
                os.makedirs(host.user_dir, exist_ok=True)
                host.start()
                self.keys[mode, query] = {
                    "plain": self._key(host, "plain"), "admin": self._key(host, "admin", "--admin"),
                    "spare": self._key(host, "spare")}
                self.hosts[mode, query] = host.restart()  # the keys are read at start

    @staticmethod
    def _key(host, name, *flags):
        return json.loads(host.cli("create-key", "--name", name, "--rate-limit", "1000000", *flags, "--json").stdout)

    def stop(self):
        for host in self.hosts.values():
            host.discard()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    built = Fleet(str(tmp_path_factory.mktemp("forms")))
    yield built
    built.stop()


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def code(self):
        return self.json().get("error_code") if self.body.startswith(b"{") else None

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


def send(host, method, path, headers=(), body=None):
    """One request with the headers exactly as listed."""
    connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=20)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def assert_key_used(answer, key):
    """A 200 charged to the key: its usage, with the rate-limit headers of a key request."""
    assert answer.status == 200, answer
    assert answer.headers.get("x-ratelimit-limit") == str(key["rate_limit"]), answer.headers
    if answer.body.startswith(b'{"key_id"'):
        assert answer.json()["key_id"] == key["key_id"]


def assert_refused(answer, code):
    assert answer.status == 401, answer
    assert answer.code == code, answer
    assert answer.headers["www-authenticate"] == BEARER_CHALLENGE


def assert_anonymous(mode, host, headers, path_suffix=""):
    """No credential: ComfyUI's routes are open in enable, 401 AUTH_REQUIRED in require;
    the key's own route asks for a key either way."""
    for twin in TWINS:
        answer = send(host, "GET", f"{twin}/system_stats{path_suffix}", headers)
        if mode == "enable":
            assert answer.status == 200, (twin, answer)
            assert "x-ratelimit-limit" not in answer.headers, "charged to a key"
        else:
            assert_refused(answer, "AUTH_REQUIRED")
        usage = send(host, "GET", f"{twin}/usage{path_suffix}", headers)
        assert usage.status == 401 and usage.code in ("KEY_REQUIRED", "AUTH_REQUIRED"), (twin, usage)
        assert usage.headers["www-authenticate"] == BEARER_CHALLENGE


MODES = ("enable", "require")


# ---- 4. HTTP Basic -------------------------------------------------------------------------------

FOREIGN_BASIC = (basic("alice", "hunter2"), basic("comfy_user", "secret"), basic("alice", ""),
                 "Basic Zm9v",  # "foo": no colon
                 "Basic !!!not base64!!!", "Basic " + base64.b64encode(b"a:\xff\xfe").decode(), "Basic", "basic  ")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("user", ["", "comfy", "anything at all"])
def test_basic_with_our_key_as_password_is_the_key_and_any_other_basic_is_ignored(fleet, mode, user):
    host, keys = fleet.hosts[mode, "off"], fleet.keys[mode, "off"]
    header = [("Authorization", basic(user, keys["plain"]["api_key"]))]
    for twin in TWINS:
        for _ in range(2):  # the second time, the header is a remembered one
            assert_key_used(send(host, "GET", f"{twin}/usage", header), keys["plain"])
            assert_key_used(send(host, "GET", f"{twin}/system_stats", header), keys["plain"])
    # nginx auth_basic in front passes its own Authorization upstream: not a credential here
    for value in FOREIGN_BASIC:
        assert_anonymous(mode, host, [("Authorization", value)])


@pytest.mark.parametrize("mode", MODES)
def test_basic_admin_key_reaches_admin_routes_and_a_plain_key_does_not(fleet, mode):
    host, keys = fleet.hosts[mode, "off"], fleet.keys[mode, "off"]
    admin = [("Authorization", basic("x", keys["admin"]["api_key"]))]
    plain = [("Authorization", basic("x", keys["plain"]["api_key"]))]
    for twin in TWINS:
        for _ in range(2):
            assert send(host, "GET", f"{twin}/keys", admin).status == 200
            refused = send(host, "GET", f"{twin}/keys", plain)
            assert refused.status == 403 and refused.code == "SCOPE_REQUIRED", refused


@pytest.mark.parametrize("mode", MODES)
def test_basic_with_a_bad_key_is_refused_like_any_bad_key(fleet, mode):
    host, keys = fleet.hosts[mode, "off"], fleet.keys[mode, "off"]
    for password, code in ((UNKNOWN_KEY, "INVALID_KEY"), ("comfy_short", "MALFORMED_KEY"),
                           (keys["plain"]["api_key"] + "x", "MALFORMED_KEY")):
        header = [("Authorization", basic("user", password))]
        for twin in TWINS:
            for path in ("/system_stats", "/usage", "/auth/status"):  # a public route too: never anonymous
                assert_refused(send(host, "GET", twin + path, header), code)


@pytest.mark.parametrize("mode", MODES)
def test_basic_beside_x_api_key(fleet, mode):
    """Our Basic and an X-API-Key with another key conflict; a foreign Basic leaves the X-API-Key alone."""
    host, keys = fleet.hosts[mode, "off"], fleet.keys[mode, "off"]
    conflicting = [("Authorization", basic("x", keys["plain"]["api_key"])), ("X-API-Key", keys["spare"]["api_key"])]
    same = [("Authorization", basic("x", keys["plain"]["api_key"])), ("X-API-Key", keys["plain"]["api_key"])]
    foreign = [("Authorization", basic("alice", "hunter2")), ("X-API-Key", keys["plain"]["api_key"])]
    for twin in TWINS:
        assert_refused(send(host, "GET", f"{twin}/system_stats", conflicting), "CONFLICTING_CREDENTIALS")
        assert_key_used(send(host, "GET", f"{twin}/usage", same), keys["plain"])
        assert_key_used(send(host, "GET", f"{twin}/usage", foreign), keys["plain"])


def test_a_remembered_basic_header_stops_working_when_its_key_is_disabled(fleet):
    host, keys = fleet.hosts["require", "off"], fleet.keys["require", "off"]
    victim = json.loads(host.cli("create-key", "--name", "victim", "--json").stdout)
    admin = [("X-API-Key", keys["admin"]["api_key"])]
    header = [("Authorization", basic("x", victim["api_key"]))]
    deadline = time.time() + 20  # the running server picks the new key up on its refresh
    while send(host, "GET", "/api/system_stats", header).status != 200:
        assert time.time() < deadline, "the new key never worked"
        time.sleep(0.2)
    assert_key_used(send(host, "GET", "/api/usage", header), victim)  # remembered now
    off = send(host, "PATCH", f"/api/keys/{victim['key_id']}", admin, b'{"is_active": false}')
    assert off.status == 200, off
    for twin in TWINS:
        assert_refused(send(host, "GET", f"{twin}/system_stats", header), "KEY_DISABLED")


# ---- 5. an empty Bearer --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer    ", "bearer", "BEARER \t "])
def test_an_empty_bearer_is_no_credential(fleet, mode, value):
    host = fleet.hosts[mode, "off"]
    assert_anonymous(mode, host, [("Authorization", value)])


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_bearer_beside_a_key_header_leaves_the_key(fleet, mode):
    host, keys = fleet.hosts[mode, "off"], fleet.keys[mode, "off"]
    for twin in TWINS:
        answer = send(host, "GET", f"{twin}/usage", [("Authorization", "Bearer "), ("X-API-Key", keys["plain"]["api_key"])])
        assert_key_used(answer, keys["plain"])


# ---- 6. ?token=<key> -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_query_token_is_the_key_only_when_on(fleet, mode):
    host, keys = fleet.hosts[mode, "on"], fleet.keys[mode, "on"]
    token = keys["plain"]["api_key"]
    for twin in TWINS:
        assert_key_used(send(host, "GET", f"{twin}/usage?token={token}"), keys["plain"])
        assert_key_used(send(host, "GET", f"{twin}/system_stats?token={token}"), keys["plain"])
        assert_key_used(send(host, "GET", f"{twin}/queue?a=1&token={token}&b=2"), keys["plain"])
        admin = send(host, "GET", f"{twin}/keys?token={keys['admin']['api_key']}")
        assert admin.status == 200, admin
        plain = send(host, "GET", f"{twin}/keys?token={token}")
        assert plain.status == 403 and plain.code == "SCOPE_REQUIRED", plain
    # on: an empty ?token= or another node's token (ComfyUI-Login's) is not ours
    for suffix in ("?token=", "?token=abc123", "?token=%20"):
        assert_anonymous(mode, host, [], suffix)
    # off (the default): a key in the URL is not a credential, and not refused either
    off_host, off_keys = fleet.hosts[mode, "off"], fleet.keys[mode, "off"]
    assert_anonymous(mode, off_host, [], f"?token={off_keys['plain']['api_key']}")
    assert_anonymous(mode, off_host, [], f"?token={UNKNOWN_KEY}")


@pytest.mark.parametrize("mode", MODES)
def test_query_token_on_refuses_a_bad_or_conflicting_token(fleet, mode):
    host, keys = fleet.hosts[mode, "on"], fleet.keys[mode, "on"]
    plain, spare = keys["plain"]["api_key"], keys["spare"]["api_key"]
    for twin in TWINS:
        assert_refused(send(host, "GET", f"{twin}/auth/status?token={UNKNOWN_KEY}"), "INVALID_KEY")
        assert_refused(send(host, "GET", f"{twin}/system_stats?token=comfy_short"), "MALFORMED_KEY")
        assert_refused(send(host, "GET", f"{twin}/system_stats?token={plain}&token={spare}"),
                       "CONFLICTING_CREDENTIALS")
        assert_refused(send(host, "GET", f"{twin}/system_stats?token={plain}", [("Authorization", f"Bearer {spare}")]),
                       "CONFLICTING_CREDENTIALS")
        assert_refused(send(host, "GET", f"{twin}/system_stats?token={plain}", [("X-API-Key", spare)]),
                       "CONFLICTING_CREDENTIALS")
        # the same key twice is one key
        assert_key_used(send(host, "GET", f"{twin}/usage?token={plain}", [("Authorization", f"Bearer {plain}")]),
                        keys["plain"])


def run_workflow_with_token(host, token, client_id):
    """POST /prompt and the WebSocket with ?token=, as a browser would: (prompt_id, socket messages)."""
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 255}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "token"}}}

    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{host.base}/ws?clientId={client_id}&token={token}") as ws:
                hello = await ws.receive_json(timeout=10)
                async with session.post(f"{host.base}/api/prompt?token={token}",
                                        json={"prompt": prompt, "client_id": client_id}) as response:
                    assert response.status == 200, await response.text()
                    prompt_id = (await response.json())["prompt_id"]
                messages = [hello]
                while True:
                    message = await ws.receive_json(timeout=20)
                    messages.append(message)
                    if (message["type"] == "executing" and message["data"]["node"] is None
                            and message["data"]["prompt_id"] == prompt_id):
                        return prompt_id, messages
    return asyncio.run(go())


@pytest.mark.parametrize("mode", MODES)
def test_query_token_runs_a_workflow_and_leaves_no_trace(fleet, mode):
    host, keys = fleet.hosts[mode, "on"], fleet.keys[mode, "on"]
    token, admin_token = keys["plain"]["api_key"], keys["admin"]["api_key"]
    client_id = uuid.uuid4().hex
    prompt_id, messages = run_workflow_with_token(host, token, client_id)
    # ComfyUI still read its own parameters from the URL the token was taken from
    assert messages[0]["type"] == "status" and messages[0]["data"]["sid"] == client_id
    executed = [m for m in messages if m["type"] == "executed"]
    assert executed and executed[0]["data"]["output"]["images"][0]["filename"].startswith("token")
    image = executed[0]["data"]["output"]["images"][0]
    view = send(host, "GET", f"/api/view?filename={image['filename']}&type=output&token={token}")
    assert view.status == 200 and view.body.startswith(b"\x89PNG"), view  # an <img src> with the key
    created = send(host, "POST", f"/api/keys?token={admin_token}", body=b'{"name": "made with a token"}')
    assert created.status == 200, created
    bearer = [("Authorization", f"Bearer {admin_token}")]
    traces = {
        "queue": send(host, "GET", "/api/queue", bearer).body,
        "history": send(host, "GET", f"/api/history/{prompt_id}", bearer).body,
        "all history": send(host, "GET", "/api/history", bearer).body,
        "audit": send(host, "GET", "/api/audit", bearer).body,
        "internal logs": send(host, "GET", "/internal/logs", bearer).body,
    }
    assert prompt_id.encode() in traces["history"]
    assert b"made with a token" in traces["audit"]
    time.sleep(0.3)  # the log file is unbuffered; let the last lines land
    traces["server log"] = host.log().encode()
    assert b"url-logging-node saw /api/prompt with headers" in traces["server log"]
    assert f"url-logging-node saw /ws?clientId={client_id} with".encode() in traces["server log"]
    for secret in (token, admin_token):
        for where, text in traces.items():
            assert secret.encode() not in text, f"the key is in the {where}"
            assert secret[6:].encode() not in text, f"the key is in the {where}"
