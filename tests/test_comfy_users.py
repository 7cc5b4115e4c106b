"""Each key has its own ComfyUI user (issue 13, item 5): workflows, settings
and user.css kept apart per key over real HTTP, on both route twins, in
enable and require mode; admins and anonymous callers keep ``default``;
GET /users never shows a user list unless the operator ran --multi-user;
/settings never answers 401 to a key holder; hostile path spellings and
spoofed ``comfy-user`` headers reach nothing outside the key's own folder.
"""

import os
import uuid

import pytest
import requests

from conftest import Host, drop_postgres_database

PASSWORD = "correct horse battery staple"
MODES = ("enable", "require")
TWINS = ("/api", "")
SINGLE_USER = {"storage": "server", "migrated": True}
ADMIN_SECRET = b"admin-only-" + uuid.uuid4().hex.encode()


def key_user_dir(host, key):
    return os.path.join(host.user_dir, "apikey." + key["key_id"])


class Server:
    """One host per mode, with an admin session and three keys (two plain, one admin-scope)."""

    def __init__(self, root, mode, extra_args=()):
        env = {"COMFYUI_API_AUTH": mode, "COMFYUI_API_AUTH_TRUST_LOCALHOST": "off",
               "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
               # the probe node's route, which no table knows, opened to keys (else admin-only)
               "COMFYUI_API_AUTH_ROUTE_SCOPES": '{"/whoami_probe": "read"}'}
        self.host = Host(root, env=env, extra_args=extra_args)
        os.makedirs(self.host.user_dir, exist_ok=True)
        self.host.start()
        self.admin = requests.Session()
        assert self.admin.post(self.host.url("/api/auth/login"), json={"password": PASSWORD}).status_code == 200
        self.a = self.create_key("a")
        self.b = self.create_key("b")
        self.admin_key = self.create_key("boss", scopes=["admin"])
        # A browser session opened with key a: the same ComfyUI user as the key itself.
        self.a_browser = requests.Session()
        login = self.a_browser.post(self.host.url("/api/auth/login"), json={"api_key": self.a["api_key"]})
        assert login.status_code == 200, login.text
        if "--multi-user" in extra_args:
            return  # ComfyUI has no default user then (only users.json's)
        # The admin's own file, in ComfyUI's default user.
        saved = self.admin.post(self.host.url("/api/userdata/secret.json"), data=ADMIN_SECRET)
        assert saved.status_code == 200, saved.text

    def create_key(self, name, **fields):
        response = self.admin.post(self.host.url("/api/keys"), json={"name": name, "rate_limit": 1000000, **fields})
        assert response.status_code == 200, response.text
        return response.json()

    def url(self, twin, path):
        return self.host.url(twin + path)

    def stop(self):
        self.host.stop()
        if self.host.own_database:
            drop_postgres_database(self.host.own_database)


def bearer(key, **extra):
    return {"Authorization": f"Bearer {key['api_key']}", **extra}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy_users")
    started = {}
    try:
        for mode in MODES:
            started[mode] = Server(str(root / mode), mode)
        yield started
    finally:
        for server in started.values():
            server.stop()


CASES = [(mode, twin) for mode in MODES for twin in TWINS]


@pytest.mark.parametrize("mode, twin", CASES)
def test_a_keys_workflow_is_its_own(servers, mode, twin):
    server = servers[mode]
    a, b = server.a, server.b
    name = f"w{uuid.uuid4().hex[:8]}.json"
    mine = b'{"nodes": [], "owner": "a"}'
    saved = requests.post(server.url(twin, f"/userdata/workflows%2F{name}"), data=mine, headers=bearer(a))
    assert saved.status_code == 200, saved.text
    assert requests.get(server.url(twin, f"/userdata/workflows%2F{name}"), headers=bearer(a)).content == mine
    listed = requests.get(server.url(twin, "/userdata?dir=workflows&recurse=true"), headers=bearer(a)).json()
    assert name in listed
    # On disk in the key's own folder, nowhere else.
    assert os.path.isfile(os.path.join(key_user_dir(server.host, a), "workflows", name))
    assert not os.path.exists(os.path.join(server.host.user_dir, "default", "workflows", name))
    # The same key signed in in a browser sees the same workflows.
    assert name in server.a_browser.get(server.url(twin, "/userdata?dir=workflows")).json()

    # Key b neither lists nor reads it, even naming a's user in comfy-user; it has its own.
    spoof = bearer(b, **{"Comfy-User": "apikey." + a["key_id"]})
    for headers in (bearer(b), spoof):
        listing = requests.get(server.url(twin, "/userdata?dir=workflows"), headers=headers)
        assert listing.status_code == 404 or name not in listing.json()
        assert requests.get(server.url(twin, f"/userdata/workflows%2F{name}"), headers=headers).status_code == 404
        tree = requests.get(server.url(twin, "/v2/userdata"), headers=headers).json()
        assert all(name != entry["name"] for entry in tree)
    theirs = b'{"nodes": [], "owner": "b"}'
    assert requests.post(server.url(twin, f"/userdata/workflows%2F{name}"), data=theirs,
                         headers=bearer(b)).status_code == 200
    assert requests.get(server.url(twin, f"/userdata/workflows%2F{name}"), headers=bearer(b)).content == theirs
    assert requests.get(server.url(twin, f"/userdata/workflows%2F{name}"), headers=bearer(a)).content == mine
    # The admin (default user) does not see the keys' workflows.
    assert server.admin.get(server.url(twin, f"/userdata/workflows%2F{name}")).status_code == 404


@pytest.mark.parametrize("mode, twin", CASES)
def test_the_admins_default_files_are_invisible_to_keys(servers, mode, twin):
    server = servers[mode]
    assert server.admin.get(server.url(twin, "/userdata/secret.json")).content == ADMIN_SECRET
    for headers in (bearer(server.a), bearer(server.a, **{"Comfy-User": "default"})):
        assert requests.get(server.url(twin, "/userdata/secret.json"), headers=headers).status_code == 404
        listing = requests.get(server.url(twin, "/userdata?dir=.&recurse=true"), headers=headers)
        assert listing.status_code in (200, 404) and b"secret.json" not in listing.content
        assert b"secret.json" not in requests.get(server.url(twin, "/v2/userdata"), headers=headers).content
    # An admin-scope key is an admin: it keeps default, as the admin's session does.
    assert requests.get(server.url(twin, "/userdata/secret.json"),
                        headers=bearer(server.admin_key)).content == ADMIN_SECRET


@pytest.mark.parametrize("mode, twin", CASES)
def test_settings_are_per_key(servers, mode, twin):
    server = servers[mode]
    setting = "Comfy.Test" + uuid.uuid4().hex[:6]
    assert requests.post(server.url(twin, f"/settings/{setting}"), json="a's value",
                         headers=bearer(server.a)).status_code == 200
    assert requests.get(server.url(twin, f"/settings/{setting}"), headers=bearer(server.a)).json() == "a's value"
    assert server.a_browser.get(server.url(twin, "/settings")).json()[setting] == "a's value"
    assert requests.get(server.url(twin, f"/settings/{setting}"), headers=bearer(server.b)).json() is None
    assert setting not in requests.get(server.url(twin, "/settings"), headers=bearer(server.b)).json()
    assert server.admin.get(server.url(twin, f"/settings/{setting}")).json() is None
    # All settings at once, too; and the admin's stay the admin's.
    assert requests.post(server.url(twin, "/settings"), json={setting: "b's value"},
                         headers=bearer(server.b)).status_code == 200
    assert requests.get(server.url(twin, f"/settings/{setting}"), headers=bearer(server.b)).json() == "b's value"
    assert requests.get(server.url(twin, f"/settings/{setting}"), headers=bearer(server.a)).json() == "a's value"
    assert server.admin.get(server.url(twin, f"/settings/{setting}")).json() is None
    assert os.path.isfile(os.path.join(key_user_dir(server.host, server.a), "comfy.settings.json"))


@pytest.mark.parametrize("mode, twin", CASES)
def test_user_css_is_per_key(servers, mode, twin):
    server = servers[mode]
    css = f"body {{ color: #{uuid.uuid4().hex[:6]}; }}".encode()
    assert requests.post(server.url(twin, "/userdata/user.css"), data=css, headers=bearer(server.a)).status_code == 200
    assert requests.get(server.url(twin, "/userdata/user.css"), headers=bearer(server.a)).content == css
    assert server.a_browser.get(server.url(twin, "/userdata/user.css")).content == css
    assert requests.get(server.url(twin, "/userdata/user.css"), headers=bearer(server.b)).content != css
    assert server.admin.get(server.url(twin, "/userdata/user.css")).content != css


def principals(server):
    """Every kind of caller, each also sending a comfy-user of its choice."""
    anonymous = requests.Session()
    yield "key", requests.Session(), bearer(server.a)
    yield "key session", server.a_browser, {}
    yield "admin session", server.admin, {}
    yield "admin key", requests.Session(), bearer(server.admin_key)
    if server.host.env["COMFYUI_API_AUTH"] == "enable":
        yield "anonymous", anonymous, {}


@pytest.mark.parametrize("mode, twin", CASES)
def test_get_users_never_lists_users_without_operator_multi_user(servers, mode, twin):
    server = servers[mode]
    for who, session, headers in principals(server):
        for sent in (None, "default", "apikey." + server.b["key_id"], "someone_else"):
            extra = {} if sent is None else {"Comfy-User": sent}
            response = session.get(server.url(twin, "/users"), headers={**headers, **extra})
            assert response.status_code == 200, (who, sent)
            assert response.json() == SINGLE_USER, (who, sent)


@pytest.mark.parametrize("mode, twin", CASES)
def test_settings_never_401_for_a_key_holder_even_a_brand_new_key(servers, mode, twin):
    server = servers[mode]
    fresh = server.create_key("fresh" + uuid.uuid4().hex[:6])
    # Its very first request, naming a user ComfyUI does not know: still 200, its own.
    first = requests.get(server.url(twin, "/settings"), headers=bearer(fresh, **{"Comfy-User": "nobody"}))
    assert first.status_code == 200 and first.json() == {}
    browser = requests.Session()
    assert browser.post(server.host.url("/api/auth/login"), json={"api_key": fresh["api_key"]}).status_code == 200
    assert browser.get(server.url(twin, "/settings"), headers={"Comfy-User": "ghost"}).status_code == 200
    for who, session, headers in principals(server):
        response = session.get(server.url(twin, "/settings"), headers={**headers, "Comfy-User": "ghost"})
        assert response.status_code == 200, who


def test_a_keys_files_and_settings_survive_a_restart(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    admin = requests.Session()
    assert admin.post(host.url("/api/auth/login"), json={"password": PASSWORD}).status_code == 200
    key = admin.post(host.url("/api/keys"), json={"name": "keeper"}).json()
    assert host.post("/api/userdata/workflows%2Fkept.json", data=b"kept", headers=bearer(key)).status_code == 200
    assert host.post("/api/settings/Comfy.Kept", json=1, headers=bearer(key)).status_code == 200
    own = key_user_dir(host, key)
    assert os.path.isfile(os.path.join(own, "workflows", "kept.json"))
    host.restart()
    # The first request after the restart: its user is registered again, and finds the same folder.
    assert host.get("/api/settings", headers=bearer(key)).json() == {"Comfy.Kept": 1}
    assert host.get("/api/userdata/workflows%2Fkept.json", headers=bearer(key)).content == b"kept"
    assert host.get("/api/users", headers=bearer(key)).json() == SINGLE_USER
    assert sorted(os.listdir(own)) == ["comfy.settings.json", "workflows"]
    assert not os.path.exists(os.path.join(host.user_dir, "default", "workflows", "kept.json"))
    # Nothing about key users went into ComfyUI's users.json.
    users_file = os.path.join(host.user_dir, "users.json")
    assert not os.path.exists(users_file) or "apikey." not in open(users_file).read()


def attack_paths(host, secret_abs):
    """Spellings of a file outside the key's folder: the admin's, the package's data, absolute."""
    user_dir = host.user_dir
    return [
        "..%2Fdefault%2Fsecret.json",
        "%2e%2e%2Fdefault%2Fsecret.json",
        "%2E%2E%2fdefault%2fsecret.json",
        "%252e%252e%252Fdefault%252Fsecret.json",
        "..%5Cdefault%5Csecret.json",
        "..%2F..%2Fuser%2Fdefault%2Fsecret.json",
        "..%2F__api_auth%2Fauth.db",
        "%2e%2e%2F__api_auth%2Fconfig.json",
        secret_abs.replace("/", "%2F"),
        (user_dir + "/__api_auth/auth.db").replace("/", "%2F"),
        "workflows%2F..%2F..%2Fdefault%2Fsecret.json",
    ]


def snapshot(directory):
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            if name.startswith("auth.db"):
                continue  # the package's database changes as requests are counted
            with open(path, "rb") as handle:
                found[path] = handle.read()
    return found


@pytest.mark.parametrize("mode, twin", CASES)
def test_path_attacks_reach_nothing_outside_the_keys_folder(servers, mode, twin):
    server = servers[mode]
    host, a = server.host, server.a
    secret_abs = os.path.join(host.user_dir, "default", "secret.json")
    own = key_user_dir(host, a)
    assert requests.post(server.url(twin, "/userdata/mine.json"), data=b"mine", headers=bearer(a)).status_code == 200
    outside_before = {path: data for path, data in snapshot(host.user_dir).items() if not path.startswith(own + os.sep)}
    database = open(os.path.join(host.user_dir, "__api_auth", "auth.db"), "rb").read(16) if os.path.exists(
        os.path.join(host.user_dir, "__api_auth", "auth.db")) else None
    header_spoofs = ({}, {"Comfy-User": "default"}, {"Comfy-User": "apikey." + server.b["key_id"]},
                     {"Comfy-User": "../default"}, {"Comfy-User": "__api_auth"}, {"Comfy-User": "/"})
    answers = []
    for extra in header_spoofs:
        headers = bearer(a, **extra)
        for path in attack_paths(host, secret_abs):
            answers.append(requests.get(server.url(twin, f"/userdata/{path}"), headers=headers))
            answers.append(requests.post(server.url(twin, f"/userdata/{path}"), data=b"evil", headers=headers))
            answers.append(requests.delete(server.url(twin, f"/userdata/{path}"), headers=headers))
            answers.append(requests.post(server.url(twin, f"/userdata/{path}/move/stolen.json"), headers=headers))
            answers.append(requests.post(server.url(twin, f"/userdata/mine.json/move/{path}"),
                                         params={"overwrite": "true"}, headers=headers))
        for directory in ("..", "../default", "%2e%2e", "%2e%2e%2Fdefault", "..%2F__api_auth",
                          os.path.join(host.user_dir, "default"), host.user_dir, "/", "../..", "."):
            answers.append(requests.get(server.url(twin, "/userdata"), params={"dir": directory, "recurse": "true"},
                                        headers=headers))
            answers.append(requests.get(server.url(twin, "/v2/userdata"), params={"path": directory},
                                        headers=headers))
        answers.append(requests.get(server.url(twin, "/v2/userdata"), headers=headers))
    for answer in answers:
        body = answer.content
        assert ADMIN_SECRET not in body and b"SQLite format" not in body, answer.url
        # No listing of the user directory or of another user's folder. (A name such as
        # "..\\default\\secret.json" is one plain file in the key's own folder on POSIX.)
        for trace in (b"default/", b'"default"', b"__api_auth", b"apikey.", b"auth.db"):
            assert trace not in body, (answer.url, trace)
    outside_after = {path: data for path, data in snapshot(host.user_dir).items() if not path.startswith(own + os.sep)}
    assert outside_after == outside_before
    if database is not None:
        assert os.path.isfile(os.path.join(host.user_dir, "__api_auth", "auth.db"))


def test_with_operator_multi_user_admins_see_comfyuis_users_without_the_keys(tmp_path):
    server = Server(str(tmp_path / "multi"), "enable", extra_args=["--multi-user"])
    try:
        host, admin, a = server.host, server.admin, server.a
        alice = admin.post(host.url("/api/users"), json={"username": "alice"}).json()
        assert requests.get(host.url("/api/settings"), headers=bearer(a)).status_code == 200  # a's user now exists
        listed = admin.get(host.url("/api/users")).json()
        assert listed["storage"] == "server" and alice in listed["users"]
        assert not any(user.startswith("apikey.") for user in listed["users"])
        assert requests.get(host.url("/users"), headers=bearer(a)).json() == SINGLE_USER
        # The operator's users work as in ComfyUI, for admins; a key stays in its own folder.
        assert admin.post(host.url("/api/userdata/alice.json"), data=b"alice's",
                          headers={"Comfy-User": alice}).status_code == 200
        assert admin.get(host.url("/api/userdata/alice.json"), headers={"Comfy-User": alice}).content == b"alice's"
        assert requests.get(host.url("/api/userdata/alice.json"),
                            headers=bearer(a, **{"Comfy-User": alice})).status_code == 404
        # No one but the key gets the key's user, not even an admin naming it.
        assert requests.post(host.url("/api/userdata/a.json"), data=b"a's", headers=bearer(a)).status_code == 200
        for spelling in ("apikey." + a["key_id"], "APIKEY." + a["key_id"]):
            refused = admin.get(host.url("/api/userdata/a.json"), headers={"Comfy-User": spelling})
            assert refused.status_code in (403, 404) and refused.content != b"a's"
            anonymous = requests.get(host.url("/userdata/a.json"), headers={"Comfy-User": spelling})
            assert anonymous.status_code in (401, 403, 404) and anonymous.content != b"a's"
    finally:
        server.stop()


WHOAMI_NODE = '''
from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS = {}


@PromptServer.instance.routes.get("/whoami_probe")
async def whoami(request):
    """A custom node's own route that asks ComfyUI whose request this is."""
    try:
        return web.json_response({"user": PromptServer.instance.user_manager.get_request_user_id(request)})
    except KeyError as unknown:
        return web.json_response({"unknown": str(unknown)}, status=404)
'''


def whoami_node(root):
    folder = os.path.join(root, "whoami_node")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "__init__.py"), "w") as handle:
        handle.write(WHOAMI_NODE)
    return folder


@pytest.mark.parametrize("operator_multi_user", [False, True])
def test_other_routes_that_ask_for_the_user_never_get_a_keys_user(tmp_path, operator_multi_user):
    """ComfyUI's multi-user mode is on for the package's sake; a route that is not a
    per-user route (a custom node's, newer ComfyUI's) still never hands out a key's
    user to a client that names it, and without --multi-user answers default as before."""
    extra = ["--custom-node", whoami_node(str(tmp_path))] + (["--multi-user"] if operator_multi_user else [])
    server = Server(str(tmp_path / "host"), "enable", extra_args=extra)
    try:
        host, a = server.host, server.a
        assert requests.get(host.url("/api/settings"), headers=bearer(a)).status_code == 200  # a's user exists
        a_user = "apikey." + a["key_id"]
        callers = {"anonymous": (requests, {}), "admin": (server.admin, {}), "key b": (requests, bearer(server.b))}
        for who, (client, headers) in callers.items():
            answer = client.get(host.url("/whoami_probe"), headers={**headers, "Comfy-User": a_user}, timeout=10)
            if operator_multi_user:
                assert answer.status_code == 404 and "unknown" in answer.json(), who
            else:
                assert answer.status_code == 200 and answer.json() == {"user": "default"}, who
        if operator_multi_user:
            alice = server.admin.post(host.url("/api/users"), json={"username": "alice"}).json()
            answer = server.admin.get(host.url("/whoami_probe"), headers={"Comfy-User": alice})
            assert answer.json() == {"user": alice}  # the operator's users as in ComfyUI
    finally:
        server.stop()


def test_only_per_user_routes_are_wrapped():
    """The cheap routes (GET /object_info, the Bearer fast path) get no wrapper:
    only GET /users and the route table's per-user routes pay for a copy of the request."""
    from conftest import package_module
    comfy_users = package_module("server_routes.comfy_users")
    table = package_module("core.route_table")
    hook = comfy_users.ComfyUsers(user_manager=object(), operator_multi_user=False)
    wrapped = sorted((path, method) for (path, method), found in table.ROUTES.items()
                     if method is not None and hook.wrapper(path, method) is not None)
    assert wrapped == sorted([
        ("/users", "GET"), ("/settings", "GET"), ("/settings", "POST"), ("/settings/{id}", "GET"),
        ("/settings/{id}", "POST"), ("/userdata", "GET"), ("/v2/userdata", "GET"), ("/userdata/{file}", "GET"),
        ("/userdata/{file}", "POST"), ("/userdata/{file}", "DELETE"), ("/userdata/{file}/move/{dest}", "POST")])
    assert hook.wrapper("/object_info", "GET") is None and hook.wrapper("/prompt", "POST") is None
    assert comfy_users.ComfyUsers(user_manager=None, operator_multi_user=False).wrapper("/settings", "GET") is None


def test_with_newer_comfyuis_system_users_a_key_still_has_its_own_user(tmp_path):
    """Newer ComfyUI refuses user ids starting with "__" (system users): a key's id never does."""
    server = Server(str(tmp_path / "newer"), "require", extra_args=["--emulate-system-users"])
    try:
        host, a = server.host, server.a
        assert host.get("/api/settings", headers=bearer(a)).status_code == 200
        assert host.post("/api/userdata/workflows%2Fn.json", data=b"new", headers=bearer(a)).status_code == 200
        assert host.get("/api/userdata/workflows%2Fn.json", headers=bearer(a)).content == b"new"
        assert host.get("/api/userdata/workflows%2Fn.json", headers=bearer(server.b)).status_code == 404
        assert os.path.isfile(os.path.join(key_user_dir(host, a), "workflows", "n.json"))
        spoofed = host.get("/api/userdata/..%2F__api_auth%2Fauth.db", headers=bearer(a, **{"Comfy-User": "__api_auth"}))
        assert spoofed.status_code == 403
    finally:
        server.stop()


@pytest.mark.parametrize("key_id", ["YCKXM47U0DwFs8Mo", "..", "../default", "a/b", "__api_auth", "x\\y", "", "é", "a.b",
                                    "default", "\ud800"])
def test_a_keys_user_id_is_one_plain_folder_name_comfyui_never_makes(key_id):
    import re
    names = __import__("conftest").package_module("core.comfy_user_names")
    user = names.key_user_id(key_id)
    assert user.startswith("apikey.") and names.is_key_user(user) and names.is_key_user(user.upper())
    assert "/" not in user and "\\" not in user and user not in (".", "..") and not user.startswith("__")
    assert os.path.dirname(os.path.normpath(os.path.join("/u", user))) == "/u"
    # ComfyUI's add_user: re.sub("[^a-zA-Z0-9-_]+", "-", name) + "_" + uuid4; never a ".".
    assert not re.fullmatch(r"[a-zA-Z0-9_-]+_[0-9a-f-]{36}", user)
    assert "." in user and names.key_user_id(key_id) == user  # the same after a restart
    assert not names.is_key_user("default") and not names.is_key_user("alice_" + str(uuid.uuid4()))
