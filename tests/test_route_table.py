"""The route table (core/route_table.py) against what real servers register
and what real pages call, without a server of ours.

Evidence it is checked against, all committed:
- tests/fingerprint/comfyui-0.3.64.json: every route real ComfyUI 0.3.64 registers;
- tests/fixtures/page_load_calls_*.json: what frontends 1.27.10 and 1.58.1 (with
  ComfyUI-Manager 3.31.9) asked for during page load, recorded from a real
  ComfyUI in headless Chromium, and what comfyui-manager 4.3's page load asks
  for, read from its sources;
- tests/fixtures/manager-*-routes.json: every route ComfyUI-Manager 3.31.9 and
  comfyui-manager 4.3 register, each judged change / change with ?value= / read.

Recorded paths are resolved the way the middleware sees them: through an
aiohttp router laid out like ComfyUI's (``/api`` twins, the ``/internal``
sub-app, static mounts last), then ``policy.canonical_path``.
"""

import asyncio
import glob
import json
import os
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from conftest import REPO, package_module

table = package_module("core.route_table")
policy = package_module("core.policy")

FIXTURES = os.path.join(REPO, "tests", "fixtures")
FINGERPRINT = os.path.join(REPO, "tests", "fingerprint", "comfyui-0.3.64.json")
PAGE_LOAD_FILES = sorted(glob.glob(os.path.join(FIXTURES, "page_load_calls_*.json")))
MANAGER_FILES = {"3.31.9": os.path.join(FIXTURES, "manager-3.31.9-routes.json"),
                 "4.3": os.path.join(FIXTURES, "manager-4.3-routes.json")}
# Custom nodes with a WEB_DIRECTORY in the recordings (the /extensions/<name> mounts).
EXTENSION_MOUNTS = ("ComfyUI-Manager", "comfyui-api-auth", "comfyui-manager-legacy")
REGISTRATION = re.compile(r"""routes\.(get|post|put|patch|delete)\(\s*['"]([^'"]+)['"]""")


def load(path):
    with open(path) as f:
        return json.load(f)


def route_class(path, method, query=(), static=False):
    return table.required_class(path, method, query, static=static)


# ---- (a) every route of real ComfyUI 0.3.64 has a rule --------------------------

def fingerprint_routes():
    fingerprint = load(FINGERPRINT)["routes"]
    routes = dict(fingerprint["core"])
    for sub_app in fingerprint["sub_apps"].values():
        routes.update(sub_app)
    return [(path, method) for path, facts in sorted(routes.items())
            for method in facts["methods"].split()]


def test_the_fingerprint_lists_comfyuis_routes():
    routes = fingerprint_routes()
    assert len(routes) > 60 and ("/prompt", "POST") in routes and ("/internal/logs", "GET") in routes


@pytest.mark.parametrize("path,method", fingerprint_routes())
def test_every_route_of_comfyui_0_3_64_has_a_rule(path, method):
    assert route_class(path, method) in table.CLASSES


@pytest.mark.parametrize("mount", load(FINGERPRINT)["routes"]["static"])
def test_every_static_mount_of_comfyui_0_3_64_serves_page_files_to_read(mount):
    canonical = "" if mount == "/" else mount  # aiohttp drops the trailing slash
    assert route_class(canonical, "GET", static=True) == table.READ


def test_the_internal_sub_app_is_admin_but_the_model_folder_names():
    internal = [(p, m) for p, m in fingerprint_routes() if p.startswith("/internal/")]
    assert len({p for p, _ in internal}) == 5
    for path, method in internal:
        # folder_paths answers keys the folder names only (server_routes/folder_names.py)
        expected = table.READ if path == "/internal/folder_paths" else table.ADMIN
        assert route_class(path, method) == expected, path


def test_every_route_the_standin_registers_has_a_rule():
    found = set()
    for name in glob.glob(os.path.join(REPO, "tests", "comfyui_host", "**", "*.py"), recursive=True):
        with open(name) as f:
            for method, path in REGISTRATION.findall(f.read()):
                if "internal_routes" in name:
                    path = "/internal" + path
                found.add((canonical_template(path), method.upper()))
    assert len(found) > 40
    assert [r for r in sorted(found) if route_class(*r) is None] == []


def test_every_route_this_package_registers_has_a_rule():
    found = set()
    for name in glob.glob(os.path.join(REPO, "server_routes", "*.py")):
        with open(name) as f:
            found.update((path, method.upper()) for method, path in REGISTRATION.findall(f.read()))
    assert ("/keys/{key_id}", "PATCH") in found and ("/auth/status", "GET") in found
    assert [r for r in sorted(found) if route_class(*r) is None] == []


def canonical_template(path):
    """A registered path as aiohttp's canonical reports it: no regex in {}."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


# ---- what the issue names ------------------------------------------------------

@pytest.mark.parametrize("path,method,expected", [
    ("/object_info", "GET", "read"), ("/object_info/{node_class}", "GET", "read"),
    ("/models", "GET", "read"), ("/models/{folder}", "GET", "read"),
    ("/embeddings", "GET", "read"), ("/extensions", "GET", "read"),
    ("/system_stats", "GET", "read"), ("/features", "GET", "read"), ("/i18n", "GET", "read"),
    ("/workflow_templates", "GET", "read"), ("/view_metadata/{folder_name}", "GET", "read"),
    ("/ws", "GET", "read"), ("/users", "GET", "read"),
    ("/prompt", "POST", "generate"), ("/queue", "POST", "generate"),
    ("/history", "POST", "generate"), ("/interrupt", "POST", "generate"),
    ("/upload/image", "POST", "generate"), ("/upload/mask", "POST", "generate"),
    ("/view", "GET", "generate"),
    ("/free", "POST", "admin"), ("/users", "POST", "admin"),
    ("/internal/logs", "GET", "admin"), ("/internal/files/{directory_type}", "GET", "admin"),
    ("/manager/reboot", "GET", "admin"), ("/manager/queue/install", "POST", "admin"),
    ("/v2/manager/queue/task", "POST", "admin"), ("/models/download", "POST", "admin"),
    ("/keys", "GET", "admin"), ("/keys/{key_id}", "DELETE", "admin"), ("/audit", "GET", "admin"),
    ("/auth/password", "PUT", "admin"), ("/auth/openapi.json", "GET", "admin"),
    ("/login", "GET", "public"), ("/auth/login", "POST", "public"),
    ("/auth/logout", "POST", "public"), ("/auth/status", "GET", "public"),
    ("/auth/setup", "POST", "public"), ("/auth/sessions/end-all", "POST", "admin"),
    ("/usage", "GET", "read"),
])
def test_the_classes_the_issue_names(path, method, expected):
    assert route_class(path, method) == expected


def test_work_routes_carry_the_isolation_note_and_user_data_the_user_directory_note():
    for key in [("/prompt", "POST"), ("/queue", "GET"), ("/queue", "POST"), ("/history", "GET"),
                ("/history", "POST"), ("/history/{prompt_id}", "GET"), ("/interrupt", "POST"),
                ("/view", "GET"), ("/upload/image", "POST"), ("/upload/mask", "POST"),
                ("/ws", "GET"), ("/jobs", "GET"), ("/api/jobs", "GET")]:
        assert table.OWN_WORK in table.lookup(*key).notes, key
    for key in [("/users", "GET"), ("/settings", "GET"), ("/settings", "POST"),
                ("/settings/{id}", "GET"), ("/settings/{id}", "POST"), ("/userdata", "GET"),
                ("/v2/userdata", "GET"), ("/userdata/{file}", "GET"), ("/userdata/{file}", "POST"),
                ("/userdata/{file}", "DELETE"), ("/userdata/{file}/move/{dest}", "POST")]:
        rule = table.lookup(*key)
        assert table.PER_USER in rule.notes, key
        own_settings = key[0].startswith("/settings")  # a read key saves its own settings (page load)
        assert rule.route_class == (table.READ if key[1] == "GET" or own_settings else table.GENERATE), key
    assert table.PER_USER not in table.lookup("/users", "POST").notes  # creating users is the operator's


def test_the_newer_jobs_routes_are_known_under_both_twins():
    # Registered as "/api/jobs" on the twinned table: aiohttp has /api/jobs and /api/api/jobs.
    for template in ("/api/jobs", "/api/api/jobs"):
        assert route_class(policy.canonical_path(template), "GET") == table.READ
    assert route_class(policy.canonical_path("/api/api/jobs/{job_id}/cancel"), "POST") == table.GENERATE


# ---- query-dependent rules, HEAD, unknown routes -------------------------------

@pytest.mark.parametrize("path", ["/manager/preview_method", "/manager/db_mode",
                                  "/manager/policy/component", "/manager/policy/update",
                                  "/manager/channel_url_list", "/manager/share_option",
                                  "/v2/manager/share_option"])
def test_a_manager_get_with_value_is_a_change(path):
    assert route_class(path, "GET") == table.READ
    assert route_class(path, "GET", {"value"}) == table.ADMIN
    assert route_class(path, "GET", {"mode", "value"}) == table.ADMIN
    # aiohttp answers HEAD with the GET handler, which writes on ?value= too.
    assert route_class(path, "HEAD", {"value"}) == table.ADMIN
    assert route_class(path, "HEAD") == table.READ


def test_head_follows_get_and_other_methods_do_not():
    assert route_class("/object_info", "HEAD") == table.READ
    assert route_class("/object_info", "POST") is None
    assert route_class("/free", "GET") is None  # aiohttp answers 405; nothing to grant


def test_an_unknown_route_has_no_class():
    assert route_class("/some_custom_node/api", "GET") is None
    assert route_class("/some_custom_node/assets", "GET", static=True) is None
    assert table.lookup("/nope", "POST") is None


# ---- (d) no suffix rules; prefixes only for static mounts ---------------------

def test_no_rule_is_a_pattern():
    for path, method in table.ROUTES:
        assert path.startswith("/"), path
        assert "*" not in path and "?" not in path and ".*" not in path, path
        assert method is table.ANY or method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"), method
    for prefix, _ in table.STATIC_PREFIXES:
        assert prefix.startswith("/") and prefix.endswith("/") and "*" not in prefix
    assert set(table.STATIC_MOUNTS) == {"", "/templates", "/docs"}


def test_a_file_name_grants_nothing():
    for path in ("/foo.js", "/api/foo.js", "/extensions/comfyui-api-auth/api-keys.js", "/x/login"):
        assert route_class(path, "GET") is None, path
    # A custom node's dynamic route under /extensions/ is not a page file.
    assert route_class("/extensions/some-node", "GET") is None
    assert route_class("/extensions/some-node", "GET", static=True) == table.READ


@pytest.mark.parametrize("path,method", sorted(table.ROUTES, key=lambda k: (k[0], k[1] or "")))
def test_every_template_is_written_as_aiohttp_reports_it(path, method):
    router = web.Application().router
    route = router.add_route(method or "*", path, _handler)
    assert route.resource.canonical == path


def test_the_frontends_page_files_are_not_the_asset_api(tmp_path):
    app = comfyui_like_app(str(tmp_path))
    assert resolve(app, "GET", "/assets/index-Dvhu5Mc8.js") == ("", True)
    uuid = "/api/assets/0b7e6f1c-8d2a-4c55-9a43-3f2b1c9d8e7f"
    assert resolve(app, "GET", uuid) == ("/assets/{id}", False)
    assert resolve(app, "GET", "/api/api/assets") == ("", True)  # no twin: the web root
    assert set(table.REGISTERED_ONCE_AS) <= {path for path, _ in table.ROUTES}


def test_sources_cannot_classify_one_route_twice_differently():
    with pytest.raises(ValueError):
        table._merge({"a": {("/x", "GET"): table.rule(table.READ)},
                      "b": {("/x", "GET"): table.rule(table.ADMIN)}})
    assert table._merge({"a": {("/x", "GET"): table.rule(table.READ)},
                         "b": {("/x", "GET"): table.rule(table.READ)}}) == {("/x", "GET"): table.rule(table.READ)}


# ---- (b) what a page asks for at load answers a read key -----------------------

async def _handler(request):
    return web.Response()


def comfyui_like_app(static_root):
    """An aiohttp app laid out like ComfyUI's PromptServer.add_routes: the
    /internal sub-app, every route with its /api twin, then the static
    mounts, with the table's templates as its routes. It holds the routes of
    0.3.64 and of newer ComfyUI at once: a recorded "/templates/x.json" meets
    the newer "/templates/{path}" handler before 0.3.64's static mount (both
    read)."""
    app, internal, seen = web.Application(), web.Application(), set()
    for path, method in table.ROUTES:
        if path.startswith("/internal/"):
            internal.router.add_route(method or "*", path[len("/internal"):], _handler)
            continue
        registered = table.REGISTERED_ONCE_AS.get(path)
        for full in ([registered] if registered else ["/api" + path, path]):
            if (full, method) not in seen:
                seen.add((full, method))
                app.router.add_route(method or "*", full, _handler)
    app.add_subapp("/internal", internal)
    for name in EXTENSION_MOUNTS:
        app.router.add_static("/extensions/" + name, static_root)
    for mount in ("/templates", "/docs", "/"):
        app.router.add_static(mount, static_root)
    return app


def resolve(app, method, path):
    """(template without the /api twin, is it a static mount) as the middleware sees it."""
    match = asyncio.run(app.router.resolve(make_mocked_request(method, path, app=app)))
    resource = match.route.resource
    if resource is None:
        return None, False
    return policy.canonical_path(resource.canonical), isinstance(resource, web.StaticResource)


def test_the_recordings_are_there_and_hold_the_calls_that_matter():
    assert len(PAGE_LOAD_FILES) == 3
    calls = {(c["method"], c["path"]) for name in PAGE_LOAD_FILES for c in load(name)["calls"]}
    for expected in [("GET", "/api/users"), ("GET", "/api/settings"), ("GET", "/api/object_info"),
                     ("GET", "/ws"), ("GET", "/api/manager/share_option"), ("GET", "/api/jobs"),
                     ("POST", "/api/manager/component/loads"), ("GET", "/api/v2/customnode/installed")]:
        assert expected in calls, expected


def refusal(app, call):
    """Why a read key would be refused this page-load call, or None."""
    template, static = resolve(app, call["method"], call["path"])
    if template is None:
        return "matched no route"
    if call["path"].startswith(("/api/", "/internal/", "/ws")) and static:
        return "fell through to the static web root: the table lacks the route"
    rule = table.lookup(template, call["method"], static=static)
    if rule is None:
        return f"{template} is not in the table"
    needed = table.required_class(template, call["method"], set(call["query_keys"]), static=static)
    if needed in (table.PUBLIC, table.READ):
        return None
    return f"{template} needs {needed}"


@pytest.mark.parametrize("name", [os.path.basename(n) for n in PAGE_LOAD_FILES])
def test_every_page_load_call_answers_a_read_key(name, tmp_path):
    app = comfyui_like_app(str(tmp_path))
    calls = load(os.path.join(FIXTURES, name))["calls"]
    assert len(calls) > 5
    refused = {f"{c['method']} {c['path']}": refusal(app, c) for c in calls}
    assert {call: why for call, why in refused.items() if why} == {}


# ---- (c) ComfyUI-Manager: every route known, its changes admin ------------------

def manager_routes(version):
    return [pytest.param(r, id=f"{version}:{r['method']} {r['path']}")
            for r in load(MANAGER_FILES[version])["routes"]]


@pytest.mark.parametrize("route", manager_routes("3.31.9") + manager_routes("4.3"))
def test_a_manager_route_is_known_and_its_changes_need_admin(route):
    path, method = route["path"], route["method"]
    rule = table.lookup(path, method)
    assert rule is not None
    # Its /api twin is the same route to the middleware.
    assert table.lookup(policy.canonical_path("/api" + path), method) == rule
    if route["change"] == "always":
        assert route_class(path, method) == table.ADMIN
        assert route_class(path, method, {"value"}) == table.ADMIN
    elif route["change"] == "with_value":
        assert isinstance(rule, table.QueryRule) and rule.param == "value"
        assert route_class(path, method, {"value"}) == table.ADMIN
        assert route_class(path, method) == table.READ
    elif route.get("returns_secret"):
        assert route_class(path, method) == table.ADMIN
    else:
        assert route["change"] == "no"
        assert route_class(path, method) == table.READ


@pytest.mark.parametrize("version,expected", [("3.31.9", 50), ("4.3", 50)])
def test_the_manager_fixtures_hold_every_registration(version, expected):
    routes = load(MANAGER_FILES[version])["routes"]
    assert len(routes) == expected == len({(r["method"], r["path"]) for r in routes})


MANAGER_3_SOURCE = os.environ.get(
    "COMFYUI_MANAGER_3_SOURCE", "/work/realcomfy/ComfyUI/custom_nodes/ComfyUI-Manager")


@pytest.mark.skipif(not os.path.isdir(MANAGER_3_SOURCE), reason="ComfyUI-Manager 3.31.9 source not on this machine")
def test_the_manager_3_fixture_matches_its_source():
    found = set()
    for name in ("glob/manager_server.py", "glob/share_3rdparty.py"):
        with open(os.path.join(MANAGER_3_SOURCE, name)) as f:
            found.update((m.upper(), p) for m, p in REGISTRATION.findall(f.read()))
    assert found == {(r["method"], r["path"]) for r in load(MANAGER_FILES["3.31.9"])["routes"]}
