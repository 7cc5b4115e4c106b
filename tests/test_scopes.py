"""Scopes over real HTTP: what keys made before scopes become, what the
operator may open, how refusals are counted, and keys' scopes through every
door (the API, a browser session, the command line).

The full route x caller table is test_scope_matrix.py.
"""

import json
import os

import pytest
import requests

from conftest import (ON_POSTGRES, drop_postgres_database, fresh_postgres_database, host_data_dir, old_database,
                      package_module)


def bearer(key):
    return {"Authorization": f"Bearer {key['api_key']}"}


def cli_key(host, *args):
    return json.loads(host.cli("create-key", *args, "--rate-limit", "100000", "--json").stdout)


def scope_refusal(response, scope):
    assert response.status_code == 403, (response.url, response.status_code, response.text[:200])
    body = response.json()
    assert body["error_code"] == "SCOPE_REQUIRED" and body["required_scope"] == scope, body
    return body


def test_keys_made_before_scopes_become_generate_and_the_log_says_so_once(make_host, tmp_path):
    made = {name: package_module("core.keys").new_key() for name in ("plain", "admin")}
    url = fresh_postgres_database() if ON_POSTGRES else f"sqlite:///{tmp_path / 'v3' / 'auth.db'}"
    try:
        # A database as version 3 left it: keys stored without a scope, and an admin key.
        old_database(url, 3, [(made["plain"], "old plain", ""), (made["admin"], "old admin", "admin")])
        host = make_host(env={"COMFYUI_API_AUTH_DB": url, "COMFYUI_API_AUTH": "require"})
        admin = {"X-API-Key": made["admin"].plaintext}
        plain = {"X-API-Key": made["plain"].plaintext}
        listed = {key["name"]: key["scopes"] for key in host.get("/api/keys", headers=admin).json()["keys"]}
        assert listed == {"old plain": ["generate"], "old admin": ["admin"]}
        assert host.get("/api/object_info", headers=plain).status_code == 200
        scope_refusal(host.get("/internal/logs", headers=plain), "admin")  # lost the operator's routes
        assert host.log().count("made before scopes now have the 'generate' scope") == 1
        assert "1 key(s) made before scopes" in host.log()
        host.restart()
        assert host.log().count("made before scopes now have the 'generate' scope") == 1  # once, not per start
    finally:
        if ON_POSTGRES:
            drop_postgres_database(url)


def test_the_operator_opens_unclassified_routes_to_a_scope(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require",
                          "COMFYUI_API_AUTH_ROUTE_SCOPES": json.dumps({"/my_node/": "generate",
                                                                       "/api/manager/version": "admin"})})
    admin = cli_key(host, "--name", "admin", "--admin")
    reader = cli_key(host, "--name", "reader", "--scope", "read")
    maker = cli_key(host, "--name", "maker")
    host.restart()
    for twin in ("", "/api"):
        assert host.get(f"{twin}/my_node/echo?say=hi", headers=bearer(maker)).json() == {"echo": "hi"}
        assert host.post(f"{twin}/my_node/items/7", headers=bearer(maker)).json() == {"stored": "7"}
        scope_refusal(host.get(f"{twin}/my_node/echo", headers=bearer(reader)), "generate")
        # A classified route the operator raised: read in the table, admin here.
        scope_refusal(host.get(f"{twin}/manager/version", headers=bearer(maker)), "admin")
        assert host.get(f"{twin}/manager/version", headers=bearer(admin)).status_code == 200
    # Opened routes are no longer in the startup list; the one left still is.
    warning = [line for line in host.log().splitlines() if "are not classified" in line][-1]
    assert "GET /my_node/echo" not in warning and "GET /manager_like/effects" in warning


@pytest.mark.parametrize("value", ['{"/keys": "read"}', '{"/auth/": "generate"}', '{"/x": "public"}',
                                   '{"x": "read"}', '{"/x/*": "read"}', "not json", '["/x"]'])
def test_a_bad_route_scopes_value_closes_the_server(make_host, value):
    host = make_host(env={"COMFYUI_API_AUTH_ROUTE_SCOPES": value})
    for path in ("/api/auth/status", "/api/object_info", "/my_node/echo"):
        assert host.get(path).status_code == 503
    assert "COMFYUI_API_AUTH_ROUTE_SCOPES" in host.log()


def test_route_scopes_from_the_config_file(make_host, tmp_path):
    host = make_host(env={"COMFYUI_API_AUTH": "require"})
    maker = cli_key(host, "--name", "maker")
    os.makedirs(host_data_dir(host), exist_ok=True)  # on PostgreSQL nothing else is written there
    with open(os.path.join(host_data_dir(host), "config.json"), "w") as handle:
        json.dump({"mode": "require", "route_scopes": {"/my_node/echo": "read"}}, handle)
    host.restart()
    assert host.get("/my_node/echo", headers=bearer(maker)).status_code == 200
    scope_refusal(host.post("/my_node/items/1", headers=bearer(maker)), "admin")  # only the exact path opened


def test_refusals_for_scope_are_not_charged_and_show_as_refused(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require"})
    admin = cli_key(host, "--name", "admin", "--admin")
    small = json.loads(host.cli("create-key", "--name", "small", "--rate-limit", "3", "--json").stdout)
    host.restart()
    for _ in range(5):
        refused = host.get("/internal/logs", headers=bearer(small))
        scope_refusal(refused, "admin")
        assert "X-RateLimit-Remaining" not in refused.headers  # nothing was spent
    statuses = [host.get("/api/object_info", headers=bearer(small)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    described = host.get(f"/api/keys/{small['key_id']}", headers=bearer(admin)).json()
    stats = described["usage_stats"]
    assert described["requests_this_hour"] == 3
    assert stats["refused_requests"] == 5
    assert stats["refused"] == [{"method": "GET", "route": "/internal/logs", "requests": 5}]
    assert stats["total_requests"] == 4  # three served and the 429: the refusals are apart
    # And still after the counts reached the database.
    host.restart()
    stats = host.get(f"/api/keys/{small['key_id']}", headers=bearer(admin)).json()["usage_stats"]
    assert stats["refused_requests"] == 5


def test_a_browser_session_opened_with_a_key_has_the_keys_scopes(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require"})
    reader = cli_key(host, "--name", "reader", "--scope", "read")
    host.restart()
    session = requests.Session()
    assert session.post(host.url("/api/auth/login"), json={"api_key": reader["api_key"]}).status_code == 200
    origin = {"Origin": host.base}
    assert session.get(host.url("/api/object_info")).status_code == 200
    assert session.get(host.url("/api/queue")).status_code == 200
    scope_refusal(session.post(host.url("/api/prompt"), json={"prompt": {}}, headers=origin), "generate")
    scope_refusal(session.post(host.url("/api/upload/image"), headers=origin), "generate")
    scope_refusal(session.get(host.url("/api/keys")), "admin")


def test_scopes_through_the_api(host):
    made = host.create_key("scoped", scopes=["read"])
    assert made["scopes"] == ["read"]
    assert host.create_key("defaulted")["scopes"] == ["generate"]
    key = bearer(made)
    scope_refusal(host.post("/api/prompt", json={"prompt": {}}, headers=key), "generate")
    changed = host.patch(f"/api/keys/{made['key_id']}", json={"scopes": ["generate", "read"]})
    assert changed.status_code == 200 and changed.json()["scopes"] == ["read", "generate"]
    assert host.post("/api/prompt", json={"prompt": {}}, headers=key).status_code == 400  # ComfyUI's own answer
    scope_refusal(host.get("/api/keys", headers=key), "admin")
    assert host.patch(f"/api/keys/{made['key_id']}", json={"scopes": ["admin"]}).status_code == 200
    assert host.get("/api/keys", headers=key).status_code == 200
    for bad in ([], ["owner"], "admin", [1]):
        response = host.patch(f"/api/keys/{made['key_id']}", json={"scopes": bad})
        assert response.status_code == 400 and response.json()["field"] == "scopes", (bad, response.text)


def test_scopes_through_the_command_line(host):
    reader = cli_key(host, "--name", "reader", "--scope", "read")
    both = cli_key(host, "--name", "both", "--scope", "read", "--scope", "admin")
    plain = cli_key(host, "--name", "plain")
    assert reader["scopes"] == ["read"] and both["scopes"] == ["read", "admin"] and plain["scopes"] == ["generate"]
    listed = host.cli("list-keys").stdout
    assert "read" in listed and "generate" in listed
    refused = host.cli("create-key", "--name", "x", "--scope", "owner", check=False)
    assert refused.returncode != 0 and "owner" in refused.stderr


def test_enable_mode_holds_a_presented_key_to_its_scopes_but_not_the_anonymous(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "enable", "COMFYUI_API_AUTH_TRUST_LOCALHOST": "off"})
    reader = cli_key(host, "--name", "reader", "--scope", "read")
    host.restart()
    assert host.get("/internal/logs").status_code == 200  # ComfyUI as it was, for the anonymous
    scope_refusal(host.get("/internal/logs", headers=bearer(reader)), "admin")
    scope_refusal(host.post("/api/prompt", json={"prompt": {}}, headers=bearer(reader)), "generate")


def test_keys_get_the_model_folder_names_but_not_the_servers_paths(make_host):
    # Both frontends ask /internal/folder_paths when a workflow names a missing
    # model (1.58.1's default template does, at a new user's first page load).
    host = make_host(env={"COMFYUI_API_AUTH": "require"})
    reader = cli_key(host, "--name", "reader", "--scope", "read")
    admin = cli_key(host, "--name", "admin", "--admin")
    host.restart()
    full = host.get("/internal/folder_paths", headers=bearer(admin))
    assert full.status_code == 200 and any(full.json().values())  # the operator's paths
    names = host.get("/internal/folder_paths", headers=bearer(reader))
    assert names.status_code == 200
    assert names.json() == {name: [] for name in full.json()}  # the names, no path
    assert host.workdir not in names.text
    assert host.get("/internal/folder_paths").status_code == 401
    scope_refusal(host.get("/internal/logs", headers=bearer(reader)), "admin")  # the rest of /internal stays admin
    scope_refusal(host.get("/internal/files/output", headers=bearer(reader)), "admin")
