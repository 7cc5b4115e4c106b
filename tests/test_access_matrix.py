"""The access policy as a table: mode x principal x route family x path
spelling x method -> expected status, checked over real HTTP. (Every route
of the server, one by one, is in test_scope_matrix.py; this file picks one
route of each family and attacks its spellings.)

Exact twins (``/api/x`` and ``/x``) must give the route's own answer. Other
spellings (``//x``, ``/API/x``, ``/api/x/``, ``%2F``, dot segments) may reach
a different route or none, but can never turn a refusal into access.
"""

import http.client
import json
import os

import pytest

from conftest import Host

PASSWORD = "correct horse battery staple"

# family -> (method, canonical path, body, status when allowed, has /api twin)
FAMILIES = {
    "manager_install": ("POST", "/manager/queue/install", b"{}", 200, True),
    "manager_read": ("GET", "/manager/preview_method", None, 200, True),
    "manager_change": ("GET", "/manager/preview_method?value=auto", None, 200, True),
    "unclassified": ("GET", "/my_node/echo", None, 200, True),
    "free": ("POST", "/free", b"{}", 200, True),
    "core_read": ("GET", "/system_stats", None, 200, True),
    "core_write": ("POST", "/interrupt", b"{}", 200, True),
    "prompt": ("GET", "/prompt", None, 200, True),
    "queue": ("GET", "/queue", None, 200, True),
    "history": ("GET", "/history", None, 200, True),
    "upload": ("POST", "/upload/image", b"", 400, True),
    "view": ("GET", "/view?filename=missing.png", None, 404, True),
    "userdata": ("GET", "/userdata?dir=.", None, None, True),
    "settings": ("GET", "/settings", None, 200, True),
    "internal": ("GET", "/internal/files/output", None, 200, False),
    "internal_logs": ("GET", "/internal/logs", None, 200, False),
    "static_root": ("GET", "/", None, 200, False),
    "extensions": ("GET", "/extensions", None, 200, True),
    "ws_plain_get": ("GET", "/ws", None, None, True),
    "unknown": ("GET", "/no/such/route", None, 404, False),
    "keys_list": ("GET", "/keys", None, 200, True),
    "keys_create": ("POST", "/keys", b'{"name": "m"}', 200, True),
    "key_read": ("GET", "/keys/nokey", None, 404, True),
    "key_delete": ("DELETE", "/keys/nokey", None, 404, True),
    "usage": ("GET", "/usage", None, 200, True),
    "login_page": ("GET", "/login", None, 200, True),
    "auth_status": ("GET", "/auth/status", None, 200, True),
}
ADMIN_FAMILIES = {"keys_list", "keys_create", "key_read", "key_delete"}
PUBLIC_FAMILIES = {"login_page", "auth_status"}
# The scope a key needs on a ComfyUI, Manager or other node's route (the issue's
# classes, written here apart from the package's table so each checks the other).
FAMILY_SCOPES = {
    "core_read": "read", "queue": "read", "history": "read", "userdata": "read", "settings": "read",
    "static_root": "read", "extensions": "read", "ws_plain_get": "read", "unknown": "read", "manager_read": "read",
    "core_write": "generate", "prompt": "generate", "upload": "generate", "view": "generate",
    "internal": "admin", "internal_logs": "admin", "manager_install": "admin", "manager_change": "admin",
    "unclassified": "admin", "free": "admin",
}
LEVEL = {"read": 1, "generate": 2, "admin": 3}
PRINCIPAL_LEVEL = {"read_key": 1, "key": 2, "key_session": 2, "admin_key": 3, "admin_session": 3, "local": 3}

PRINCIPALS = ["anonymous", "read_key", "key", "admin_key", "admin_session", "key_session",
              "bad_key", "malformed_key", "disabled_key", "local"]


def expected_status(mode, principal, family):
    """What the policy promises, or None for 'whatever the route answers'."""
    allowed_status = FAMILIES[family][3]
    if principal in ("bad_key", "malformed_key", "disabled_key"):
        return 401  # a presented key that fails is never anonymous
    is_admin = principal in ("admin_key", "admin_session", "local")
    has_key = principal in ("key", "read_key", "admin_key", "key_session")
    if family in PUBLIC_FAMILIES:
        return allowed_status
    if family in ADMIN_FAMILIES:
        if is_admin:
            return allowed_status
        return 401 if principal == "anonymous" else 403
    if family == "usage":
        return allowed_status if has_key else 401
    if principal == "anonymous":
        return 401 if mode == "require" else allowed_status  # enable: ComfyUI as it was
    if PRINCIPAL_LEVEL[principal] < LEVEL[FAMILY_SCOPES[family]]:
        return 403  # SCOPE_REQUIRED, in both modes
    if family == "view" and principal in ("key", "key_session"):
        return 403  # each key's files are its own: an output name not its own, missing or not, is refused
    return allowed_status


class Fleet:
    """Started once per module: hosts for each mode, and credentials."""

    def __init__(self, root):
        self.hosts = {}
        self.credentials = {}
        for mode, trust in (("enable", "off"), ("require", "off"), ("enable-local", "on")):
            env = {"COMFYUI_API_AUTH": mode.split("-")[0], "COMFYUI_API_AUTH_TRUST_LOCALHOST": trust,
                   "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD}
            host = Host(os.path.join(root, mode), env=env)
            os.makedirs(host.workdir, exist_ok=True)
            os.makedirs(host.user_dir, exist_ok=True)
            self.hosts[mode] = host
            self.credentials[mode] = self._bootstrap(host)

    @staticmethod
    def _cli(host, *args):
        import json
        return json.loads(host.cli(*args, "--json").stdout)

    def _bootstrap(self, host):
        host.start()  # creates the database; the command line never does
        admin = self._cli(host, "create-key", "--name", "admin", "--admin", "--rate-limit", "1000000")
        plain = self._cli(host, "create-key", "--name", "plain", "--rate-limit", "1000000")
        reader = self._cli(host, "create-key", "--name", "reader", "--scope", "read", "--rate-limit", "1000000")
        disabled = self._cli(host, "create-key", "--name", "off", "--rate-limit", "1000000")
        host.cli("disable-key", disabled["key_id"])
        host.restart()  # rather than wait for the refresh
        return {"admin": admin["api_key"], "plain": plain["api_key"], "disabled": disabled["api_key"],
                "reader": reader["api_key"],
                "admin_session": self._login(host, {"password": PASSWORD}),
                "key_session": self._login(host, {"api_key": plain["api_key"]})}

    @staticmethod
    def _login(host, body):
        response = host.post("/api/auth/login", json=body)
        assert response.status_code == 200, response.text
        return response.cookies["comfyui_api_auth"]

    def headers(self, mode, principal):
        creds = self.credentials[mode]
        return {
            "anonymous": {},
            "local": {},
            "key": {"Authorization": f"Bearer {creds['plain']}"},
            "read_key": {"Authorization": f"Bearer {creds['reader']}"},
            "admin_key": {"X-API-Key": creds["admin"]},
            "admin_session": {"Cookie": f"comfyui_api_auth={creds['admin_session']}"},
            "key_session": {"Cookie": f"comfyui_api_auth={creds['key_session']}"},
            "bad_key": {"X-API-Key": "comfy_" + "A" * 46},
            "malformed_key": {"Authorization": "Bearer not-a-key"},
            "disabled_key": {"X-API-Key": creds["disabled"]},
        }[principal]

    def stop(self):
        for host in self.hosts.values():
            host.discard()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    built = Fleet(str(tmp_path_factory.mktemp("matrix")))
    yield built
    built.stop()


def raw_request(host, method, path, headers, body=None):
    """Send the path byte for byte (no client-side normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    headers = dict(headers)
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, payload


CASES = []
for _mode in ("enable", "require"):
    for _principal in PRINCIPALS:
        if _principal == "local":
            continue
        for _family in FAMILIES:
            CASES.append((_mode, _principal, _family))
for _family in FAMILIES:
    CASES.append(("enable-local", "local", _family))


@pytest.mark.parametrize("mode, principal, family", CASES)
def test_exact_twins(fleet, mode, principal, family):
    method, path, body, _, has_twin = FAMILIES[family]
    host = fleet.hosts[mode]
    headers = fleet.headers(mode, principal)
    policy_mode = mode.split("-")[0]
    want = expected_status(policy_mode, principal, family)
    spellings = ["/api" + path, path] if has_twin else [path]
    for spelling in spellings:
        status, payload = raw_request(host, method, spelling, headers, body)
        if want is None:
            if expected_status(policy_mode, "anonymous", family) == 401 and principal in ("anonymous",):
                assert status == 401
            else:
                assert status not in (401, 403, 500), (spelling, status, payload[:200])
        else:
            assert status == want, (spelling, status, payload[:300])
        if status in (401, 403):  # our refusals are JSON with a code
            assert payload.startswith(b"{") and b"error_code" in payload, payload[:200]
        not_yours = family == "view" and principal in ("key", "key_session")  # NOT_YOUR_FILE
        if status == 403 and principal not in ("local",) and family not in ADMIN_FAMILIES and not not_yours:
            answer = json.loads(payload)
            assert answer["error_code"] == "SCOPE_REQUIRED" and answer["required_scope"] == FAMILY_SCOPES[family], answer


def spelling_variants(path):
    """Alternative spellings of /api<path>."""
    head, _, query = path.partition("?")
    tail = ("?" + query) if query else ""
    return [
        "//api" + head + tail,
        "/api/" + head + tail,
        "/API" + head + tail,
        "/Api" + head.upper() + tail,
        "/api" + head + "/" + tail,
        "/api" + head.replace("/", "%2F") + tail,
        "/api/." + head + tail,
        "/api/x/.." + head + tail,
        "/api/%2E%2E/api" + head + tail,
        "/api" + head + "%00" + tail,
        "/api" + head + ";x" + tail,
        "/api" + head + "%20" + tail,
    ]


SPELLING_CASES = [(m, p, f) for m in ("enable", "require") for p in ("anonymous", "key", "read_key")
                  for f in ("keys_list", "keys_create", "key_read", "core_read", "prompt", "internal", "view",
                            "manager_install", "manager_change", "unclassified", "free")]


@pytest.mark.parametrize("mode, principal, family", SPELLING_CASES)
def test_other_spellings_never_turn_a_refusal_into_access(fleet, mode, principal, family):
    method, path, body, _, _ = FAMILIES[family]
    host = fleet.hosts[mode]
    headers = fleet.headers(mode, principal)
    denied = expected_status(mode, principal, family) in (401, 403)
    for spelling in spelling_variants(path):
        status, payload = raw_request(host, method, spelling, headers, body)
        assert status != 500, (spelling, payload[:200])
        if denied:
            assert status >= 400 or status == 302, (spelling, status, payload[:200])
            assert b'"keys"' not in payload and b"api_key" not in payload
        if mode == "require" and principal == "anonymous":
            assert status in (401, 302), (spelling, status)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND"])
@pytest.mark.parametrize("mode", ["enable", "require"])
def test_every_method_on_key_routes_is_refused_to_anonymous(fleet, mode, method):
    host = fleet.hosts[mode]
    for path in ("/api/keys", "/keys", "/api/keys/abc", "/keys/abc"):
        status, payload = raw_request(host, method, path, {})
        if method == "OPTIONS" and mode == "enable":
            # ComfyUI's CORS/origin middleware answers every OPTIONS with an empty 200
            assert status == 200 and payload == b"", (path, status, payload)
            continue
        assert status in (401, 405), (method, path, status)
        assert b'"keys"' not in payload


def test_x_http_method_override_is_not_honoured(fleet):
    host = fleet.hosts["enable"]
    headers = dict(fleet.headers("enable", "key"), **{"X-HTTP-Method-Override": "DELETE"})
    for path in ("/api/keys/abc", "/api/keys"):
        status, _ = raw_request(host, "POST", path, headers, b'{"name": "x"}')
        assert status in (403, 405)


def test_cors_preflight_passes_to_comfyui_without_credentials(fleet):
    host = fleet.hosts["require"]
    status, _ = raw_request(host, "OPTIONS", "/api/prompt", {
        "Origin": f"http://127.0.0.1:{host.port}", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 200


def test_matrix_size_is_reported(fleet):
    """Not a check of behaviour: records the table's size in the test log."""
    spelling_requests = len(SPELLING_CASES) * 12
    twin_requests = sum(2 if FAMILIES[f][4] else 1 for _, _, f in CASES)
    print(f"\naccess matrix: {len(CASES)} twin cases ({twin_requests} requests), "
          f"{len(SPELLING_CASES)} spelling cases ({spelling_requests} requests)")
    assert len(CASES) >= 300
