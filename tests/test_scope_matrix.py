"""Every route of the server x every kind of caller x both route twins x both
modes, over real HTTP: who is refused, with which answer.

Routes: every route real ComfyUI 0.3.64 registers (its fingerprint), the
ComfyUI-Manager-like and unknown custom nodes every test host loads
(tests/other_nodes), and this package's own. What each needs comes from the
route table (core/route_table.py, itself checked against real servers in
test_route_table.py, and against the issue's words in test_access_matrix.py);
a route nobody classified needs admin.

A refusal must be exactly the policy's: 401 for the anonymous caller of
``require`` mode (and for ``/usage`` without a key), 403 ``SCOPE_REQUIRED``
naming the scope for a principal below the route. Anything else is the
route's own answer, which must then be neither a refusal nor a crash.
"""

import http.client
import json
import os

import pytest

from conftest import Host, package_module

table = package_module("core.route_table")
policy_module = package_module("core.policy")

FINGERPRINT = os.path.join(os.path.dirname(__file__), "fingerprint", "comfyui-0.3.64.json")
LEVEL = {"public": 0, "read": 1, "generate": 2, "admin": 3}
PRINCIPAL_LEVEL = {"anonymous": 0, "read_key": 1, "generate_key": 2, "key_session": 2,
                   "admin_key": 3, "admin_session": 3}
PRINCIPALS = list(PRINCIPAL_LEVEL)
KEY_PRINCIPALS = {"read_key", "generate_key", "key_session", "admin_key"}

# Routes of the other test nodes (tests/other_nodes): (path, method, query).
OTHER_NODE_ROUTES = [
    ("/manager/version", "GET", ""), ("/manager/queue/status", "GET", ""), ("/customnode/getlist", "GET", ""),
    ("/manager/preview_method", "GET", ""), ("/manager/preview_method", "GET", "value=auto"),
    ("/manager/queue/install", "POST", ""), ("/manager/reboot", "GET", ""),
    ("/manager_like/effects", "GET", ""), ("/my_node/echo", "GET", ""), ("/my_node/items/{item_id}", "POST", ""),
]
# This package's routes, but those that sign in or out (they change the
# credentials the matrix itself uses, and count sign-in attempts).
PACKAGE_ROUTES = [
    ("/keys", "GET", ""), ("/keys", "POST", ""), ("/keys/{key_id}", "GET", ""), ("/keys/{key_id}", "PATCH", ""),
    ("/keys/{key_id}", "DELETE", ""), ("/audit", "GET", ""), ("/usage", "GET", ""), ("/auth/status", "GET", ""),
    ("/auth/openapi.json", "GET", ""), ("/auth/password", "PUT", ""),
    ("/login", "GET", ""),
]
NOT_SENT = {("/auth/login", "POST"), ("/auth/logout", "POST"), ("/auth/setup", "POST"),
            ("/auth/sessions/end-all", "POST")}


def comfyui_routes():
    with open(FINGERPRINT) as handle:
        routes = json.load(handle)["routes"]
    found = []
    for group in [routes["core"], *routes["sub_apps"].values()]:
        for path, facts in sorted(group.items()):
            for method in facts["methods"].split():
                if method != "HEAD":
                    found.append((path, method, "", facts["api_twin"]))
    return found


ROUTES = comfyui_routes() + [(p, m, q, True) for p, m, q in OTHER_NODE_ROUTES + PACKAGE_ROUTES]


def needed(path, method, query):
    """(route class of the package's policy, level a key needs) for a route."""
    package_class = policy_module.AccessPolicy("require")._package_class(path, method)
    if package_class is not None:
        return package_class, policy_module.PACKAGE_CLASS_LEVELS[package_class]
    names = [part.split("=")[0] for part in query.split("&") if part]
    found = table.required_class(path, method, names)
    return policy_module.COMFY, LEVEL["admin" if found is None else found]


def expectation(mode, principal, path, method, query):
    """"allow", or the refusal: (status, error code, required scope or None)."""
    route_class, level = needed(path, method, query)
    if route_class == policy_module.PUBLIC:
        return "allow"
    if route_class == policy_module.KEY_HOLDER:
        return "allow" if principal in KEY_PRINCIPALS else (401, "KEY_REQUIRED", None)
    if principal == "anonymous":
        if route_class in policy_module.ADMIN_CLASSES or mode == "require":
            return 401, "AUTH_REQUIRED", None
        return "allow"  # enable: ComfyUI as it was
    if PRINCIPAL_LEVEL[principal] < level:
        return 403, "SCOPE_REQUIRED", "admin" if level == 3 else ("generate" if level == 2 else "read")
    return "allow"


def concrete(path):
    """A request path for a route template: every {param} becomes a harmless value."""
    parts = []
    for part in path.split("/"):
        parts.append("matrix-x" if part.startswith("{") else part)
    return "/".join(parts)


class Fleet:
    def __init__(self, root):
        self.hosts, self.headers = {}, {}
        for mode in ("enable", "require"):
            host = Host(os.path.join(root, mode), env={"COMFYUI_API_AUTH": mode,
                                                       "COMFYUI_API_AUTH_ADMIN_PASSWORD": "matrix password 1",
                                                       "COMFYUI_API_AUTH_TRUST_LOCALHOST": "off"})
            host.start()
            made = {}
            for name, scope in (("read_key", "read"), ("generate_key", "generate"), ("admin_key", "admin")):
                made[name] = json.loads(host.cli("create-key", "--name", name, "--scope", scope,
                                                 "--rate-limit", "1000000", "--json").stdout)["api_key"]
            host.restart()
            sessions = {}
            for name, body in (("admin_session", {"password": "matrix password 1"}),
                               ("key_session", {"api_key": made["generate_key"]})):
                response = host.post("/api/auth/login", json=body)
                assert response.status_code == 200, response.text
                sessions[name] = response.cookies["comfyui_api_auth"]
            self.hosts[mode] = host
            self.headers[mode] = {
                "anonymous": {},
                "read_key": {"Authorization": f"Bearer {made['read_key']}"},
                "generate_key": {"Authorization": f"Bearer {made['generate_key']}"},
                "admin_key": {"X-API-Key": made["admin_key"]},
                "admin_session": {"Cookie": f"comfyui_api_auth={sessions['admin_session']}",
                                  "Origin": host.base},
                "key_session": {"Cookie": f"comfyui_api_auth={sessions['key_session']}", "Origin": host.base},
            }

    def stop(self):
        for host in self.hosts.values():
            host.discard()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    built = Fleet(str(tmp_path_factory.mktemp("scopes")))
    yield built
    built.stop()


# Bodies a handler needs to answer rather than fail (ComfyUI answers these two
# with a 500 on an empty object, as real 0.3.64 does).
BODIES = {"/users": b'{"username": "matrix"}', "/internal/logs/subscribe": b'{"clientId": "matrix", "enabled": false}'}


def send(host, method, path, headers):
    connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=15)
    bare = path.split("?")[0]
    bare = bare[4:] if bare.startswith("/api/") else bare
    body = BODIES.get(bare, b"{}") if method in ("POST", "PATCH", "PUT") else None
    headers = dict(headers, **({"Content-Type": "application/json"} if body else {}))
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, payload


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("mode", ["enable", "require"])
def test_every_route_refuses_exactly_whom_the_policy_refuses(fleet, mode, principal):
    host, headers = fleet.hosts[mode], fleet.headers[mode][principal]
    wrong = []
    sent = 0
    for path, method, query, has_twin in ROUTES:
        if (path, method) in NOT_SENT:
            continue
        want = expectation(mode, principal, path, method, query)
        target = concrete(path) + ("?" + query if query else "")
        for spelling in (["/api" + target, target] if has_twin else [target]):
            status, payload = send(host, method, spelling, headers)
            sent += 1
            code = required = None
            if payload.startswith(b"{"):
                try:
                    answer = json.loads(payload)
                    code, required = answer.get("error_code"), answer.get("required_scope")
                except ValueError:
                    pass
            if want == "allow":
                if status == 401 or code == "SCOPE_REQUIRED" or status >= 500:
                    wrong.append((method, spelling, "want the route's own answer", status, payload[:120]))
            elif (status, code, required) != want and not (want[0] == 401 and status == 302):
                wrong.append((method, spelling, f"want {want}", status, payload[:120]))
    assert not wrong, "\n".join(map(str, wrong))
    assert sent >= 80


def test_the_matrix_covers_every_route_and_says_its_size():
    routes = [route for route in ROUTES if route[:2] not in NOT_SENT]
    requests_per_cell = sum(2 if twin else 1 for *_, twin in routes)
    classes = {}
    for path, method, query, _ in routes:
        classes.setdefault(needed(path, method, query)[1], 0)
        classes[needed(path, method, query)[1]] += 1
    print(f"\nscope matrix: {len(routes)} routes x {len(PRINCIPALS)} principals x 2 modes, "
          f"{requests_per_cell * len(PRINCIPALS) * 2} requests; routes per level {dict(sorted(classes.items()))}")
    assert len(routes) >= 60
