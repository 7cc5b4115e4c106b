"""The key API through real HTTP: lifecycle, both route spellings, validation,
who may call it, and durability across kill -9."""

import json
import os

import pytest
import requests

from conftest import host_db_file, sqlite_only

PREFIXES = ["/api", ""]  # ComfyUI serves every route as /x and /api/x


def key_count(host):
    return len(host.get("/api/keys").json()["keys"])


def test_changes_apply_to_the_very_next_request_of_a_key_already_in_use(host):
    """Repeat Bearer requests skip the hash (a verified-header cache); any key
    change must still apply to the next request, on a core route and on ours."""
    key = host.create_key("busy", rate_limit=1000)
    bearer = {"Authorization": f"Bearer {key['api_key']}"}
    for _ in range(5):
        assert host.get("/api/features", headers=bearer).status_code == 200
    limited = host.patch(f"/api/keys/{key['key_id']}", json={"rate_limit": 7})
    assert limited.status_code == 200
    response = host.get("/api/features", headers=bearer)
    assert response.status_code == 200 and response.headers["X-RateLimit-Limit"] == "7"
    assert response.headers["X-RateLimit-Remaining"] == "1"  # 6 used this hour
    assert host.get("/api/features", headers=bearer).status_code == 200
    spent = host.get("/api/features", headers=bearer)
    assert spent.status_code == 429 and spent.headers["X-RateLimit-Limit"] == "7"
    # Lowered below what the hour has used: refused at once, although the
    # process still holds quota it claimed under the old limit.
    assert host.patch(f"/api/keys/{key['key_id']}", json={"rate_limit": 3}).status_code == 200
    assert host.get("/api/features", headers=bearer).status_code == 429
    assert host.patch(f"/api/keys/{key['key_id']}", json={"rate_limit": 1000}).status_code == 200
    assert host.patch(f"/api/keys/{key['key_id']}", json={"is_active": False}).status_code == 200
    for path in ("/api/features", "/api/usage"):
        refused = host.get(path, headers=bearer)
        assert refused.status_code == 401 and refused.json()["error_code"] == "KEY_DISABLED", path
    assert host.patch(f"/api/keys/{key['key_id']}", json={"is_active": True}).status_code == 200
    assert host.get("/api/features", headers=bearer).status_code == 200
    other = host.create_key("other", rate_limit=1000)  # a change to another key must not disturb this one
    assert host.get("/api/features", headers=bearer).status_code == 200
    assert host.delete(f"/api/keys/{key['key_id']}").status_code == 200
    gone = host.get("/api/features", headers=bearer)
    assert gone.status_code == 401 and gone.json()["error_code"] == "INVALID_KEY"
    assert host.get("/api/features", headers={"Authorization": f"Bearer {other['api_key']}"}).status_code == 200


@pytest.mark.parametrize("prefix", PREFIXES)
def test_key_lifecycle_under_both_spellings(host, prefix):
    created = host.post(f"{prefix}/keys", json={"name": "My API Key", "rate_limit": 100,
                                               "metadata": {"project": "p"}})
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) >= {"key_id", "api_key", "name", "rate_limit", "metadata", "scopes", "created_at", "message"}
    assert body["api_key"].startswith("comfy_") and body["name"] == "My API Key"
    assert body["metadata"] == {"project": "p"} and body["scopes"] == ["generate"] and body["rate_limit"] == 100
    assert "will not be shown again" in body["message"]
    key_id, api_key = body["key_id"], body["api_key"]

    listed = host.get(f"{prefix}/keys").json()["keys"]
    assert [k["key_id"] for k in listed] == [key_id]
    entry = listed[0]
    assert set(entry) >= {"key_id", "name", "created_at", "last_used", "rate_limit", "is_active", "metadata"}
    assert entry["last_used"] is None and entry["is_active"] is True
    assert api_key not in json.dumps(listed)

    # the key works, by either header
    usage = host.get(f"{prefix}/usage", headers={"X-API-Key": api_key})
    assert usage.status_code == 200, usage.text
    assert usage.json()["key_id"] == key_id and usage.json()["key_name"] == "My API Key"
    assert host.get(f"{prefix}/usage", headers={"Authorization": f"bearer {api_key}"}).status_code == 200

    detail = host.get(f"{prefix}/keys/{key_id}").json()
    assert detail["usage_stats"]["total_requests"] == 2
    assert detail["last_used"] is not None

    updated = host.patch(f"{prefix}/keys/{key_id}", json={"name": "Renamed", "rate_limit": 5,
                                                          "metadata": {"a": 1}, "is_active": False})
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Renamed" and updated.json()["is_active"] is False
    disabled = host.get(f"{prefix}/usage", headers={"X-API-Key": api_key})
    assert disabled.status_code == 401 and disabled.json()["error_code"] == "KEY_DISABLED"
    assert host.patch(f"{prefix}/keys/{key_id}", json={"is_active": True}).status_code == 200
    assert host.get(f"{prefix}/usage", headers={"X-API-Key": api_key}).status_code == 200

    deleted = host.delete(f"{prefix}/keys/{key_id}")
    assert deleted.status_code == 200 and "message" in deleted.json()
    assert host.get(f"{prefix}/usage", headers={"X-API-Key": api_key}).status_code == 401
    assert host.get(f"{prefix}/keys/{key_id}").status_code == 404
    assert host.delete(f"{prefix}/keys/{key_id}").status_code == 404
    assert host.get(f"{prefix}/keys").json()["keys"] == []


INVALID_BODIES = [
    ({}, "name", "MISSING_FIELD"),
    ({"name": ""}, "name", "INVALID_FIELD"),
    ({"name": "  "}, "name", "INVALID_FIELD"),
    ({"name": "x" * 101}, "name", "INVALID_FIELD"),
    ({"name": None}, "name", "INVALID_FIELD"),
    ({"name": ["a"]}, "name", "INVALID_FIELD"),
    ({"name": "tab\there"}, "name", "INVALID_FIELD"),
    ({"name": "ok", "rate_limit": True}, "rate_limit", "INVALID_FIELD"),
    ({"name": "ok", "rate_limit": "100"}, "rate_limit", "INVALID_FIELD"),
    ({"name": "ok", "rate_limit": 10.0}, "rate_limit", "INVALID_FIELD"),
    ({"name": "ok", "rate_limit": None}, "rate_limit", "INVALID_FIELD"),
    ({"name": "ok", "rate_limit": -5}, "rate_limit", "INVALID_FIELD"),
    ({"name": "ok", "rate_limit": 10**12}, "rate_limit", "INVALID_FIELD"),
    ({"name": "ok", "metadata": ["list"]}, "metadata", "INVALID_FIELD"),
    ({"name": "ok", "metadata": None}, "metadata", "INVALID_FIELD"),
    ({"name": "ok", "metadata": {"big": "x" * 20000}}, "metadata", "INVALID_FIELD"),
    ({"name": "ok", "scopes": ["superuser"]}, "scopes", "INVALID_FIELD"),
    ({"name": "ok", "scopes": []}, "scopes", "INVALID_FIELD"),
    ({"name": "ok", "api_key": "comfy_mine"}, "api_key", "UNKNOWN_FIELD"),
    ({"name": "ok", "key_hash": "00"}, "key_hash", "UNKNOWN_FIELD"),
    ({"name": "ok", "is_admin": True}, "is_admin", "UNKNOWN_FIELD"),
    ({"name": "ok", "rate_limt": 5}, "rate_limt", "UNKNOWN_FIELD"),
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("body, field, code", INVALID_BODIES)
def test_create_validation_answers_400_naming_the_field_and_writes_nothing(host, prefix, body, field, code):
    response = host.post(f"{prefix}/keys", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error_code"] == code and error["field"] == field and field in error["error"]
    assert key_count(host) == 0


@pytest.mark.parametrize("body, field", [
    ({"name": ""}, "name"), ({"rate_limit": "5"}, "rate_limit"), ({"is_active": "false"}, "is_active"),
    ({"is_active": 0}, "is_active"), ({"metadata": [1]}, "metadata"), ({"key_id": "other"}, "key_id"),
])
def test_update_validation_changes_nothing(host, body, field):
    key = host.create_key("stable", rate_limit=7)
    response = host.patch(f"/api/keys/{key['key_id']}", json=body)
    assert response.status_code == 400 and response.json()["field"] == field
    after = host.get(f"/api/keys/{key['key_id']}").json()
    assert (after["name"], after["rate_limit"], after["is_active"]) == ("stable", 7, True)


@pytest.mark.parametrize("data, headers, status, code", [
    ("{not json", {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
    ('{"name": "a", "name": "b"}', {"Content-Type": "application/json"}, 400, "DUPLICATE_FIELD"),
    ('{"name": "a", "rate_limit": NaN}', {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
    ('["name"]', {"Content-Type": "application/json"}, 400, "INVALID_BODY"),
    ("\xff\xfe", {"Content-Type": "application/json"}, 400, "INVALID_JSON"),
    ('{"name": "a"}', {"Content-Type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ('{"name": "a"}', {}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("name=a", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ('{"name": "' + "a" * 70000 + '"}', {"Content-Type": "application/json"}, 413, "BODY_TOO_LARGE"),
])
def test_malformed_bodies(host, data, headers, status, code):
    response = host.post("/api/keys", data=data.encode("latin-1"), headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code
    assert key_count(host) == 0


def test_wrong_method_unknown_key_and_bad_days(host):
    assert host.get("/api/keys/doesnotexist").status_code == 404
    assert host.get("/api/keys/doesnotexist").json()["error_code"] == "KEY_NOT_FOUND"
    assert host.patch("/api/keys/nope", json={"name": "x"}).status_code == 404
    assert requests.put(host.url("/api/keys"), json={"name": "x"}).status_code == 405
    assert requests.put(host.url("/keys"), json={"name": "x"}).status_code == 405
    assert host.post("/api/keys/abc", json={}).status_code == 405
    assert host.post("/api/usage", json={}).status_code == 405
    key = host.create_key()
    for days in ("0", "367", "x", "-1"):
        response = host.get(f"/api/keys/{key['key_id']}?days={days}")
        assert response.status_code == 400 and response.json()["field"] == "days"
    assert host.get(f"/api/keys/{key['key_id']}?days=366").status_code == 200


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-For": "203.0.113.9"},
    {"Forwarded": "for=203.0.113.9"},
    {"X-Real-IP": "203.0.113.9"},
    {"Host": "evil.example:8188"},                       # DNS rebinding
    {"Origin": "http://evil.example"},                   # cross-site page
])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_local_trust_is_refused_to_anything_that_may_be_remote(host, headers, prefix):
    response = requests.get(host.url(f"{prefix}/keys"), headers=headers)
    assert response.status_code in (401, 403), response.text
    created = requests.post(host.url(f"{prefix}/keys"), json={"name": "x"}, headers=headers)
    assert created.status_code in (401, 403)
    assert key_count(host) == 0


def test_no_local_trust_when_listening_beyond_loopback(make_host):
    exposed = make_host(listen="0.0.0.0")
    response = exposed.get("/api/keys")
    assert response.status_code == 401 and response.json()["error_code"] == "AUTH_REQUIRED"
    assert exposed.post("/api/keys", json={"name": "x"}).status_code == 401


def test_usage_without_a_key_is_401_even_for_the_local_admin(host):
    response = host.get("/api/usage")
    assert response.status_code == 401 and response.json()["error_code"] == "KEY_REQUIRED"


def test_a_plain_key_cannot_manage_keys_but_an_admin_key_can(make_host):
    exposed = make_host(listen="0.0.0.0", env={})
    # no local trust here: bootstrap with the command line, as on a headless server
    output = exposed.cli("create-key", "--name", "ops", "--admin", "--json")
    admin_key = json.loads(output.stdout)["api_key"]
    exposed.restart()  # or wait for the refresh; restart is quicker to reason about
    admin = {"Authorization": f"Bearer {admin_key}"}
    plain = exposed.create_key("plain", headers=admin)
    as_plain = {"X-API-Key": plain["api_key"]}
    for method, path in (("get", "/api/keys"), ("post", "/keys"), ("get", f"/keys/{plain['key_id']}"),
                         ("patch", f"/api/keys/{plain['key_id']}"), ("delete", f"/api/keys/{plain['key_id']}")):
        response = getattr(requests, method)(exposed.url(path), headers=as_plain, json={"rate_limit": 10**9})
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error_code"] == "SCOPE_REQUIRED"
    assert exposed.get(f"/api/keys/{plain['key_id']}", headers=admin).json()["rate_limit"] == 100


def test_acknowledged_create_survives_kill_9_and_delete_stays_deleted(host):
    keep = host.create_key("survivor")
    doomed = host.create_key("doomed")
    assert host.delete(f"/api/keys/{doomed['key_id']}").status_code == 200
    host.kill()
    host.start()
    names = [k["name"] for k in host.get("/api/keys").json()["keys"]]
    assert names == ["survivor"]
    assert host.get("/api/usage", headers={"X-API-Key": keep["api_key"]}).status_code == 200
    assert host.get("/api/usage", headers={"X-API-Key": doomed["api_key"]}).status_code == 401


@sqlite_only
def test_data_lives_in_the_user_directory_not_userdata(host):
    assert os.path.exists(host_db_file(host))
    for path in ("/api/userdata/..%2F__api_auth%2Fauth.db", "/userdata/%2E%2E%2F__api_auth%2Fauth.db",
                 "/api/userdata?dir=../__api_auth"):
        response = host.get(path)
        assert b"SQLite format" not in response.content


@sqlite_only
def test_database_url_setting_is_used(make_host, tmp_path):
    path = tmp_path / "elsewhere" / "keys.db"
    server = make_host(env={"COMFYUI_API_AUTH_DB": f"sqlite:///{path}"})
    server.create_key("placed")
    assert path.exists()
    assert not os.path.exists(host_db_file(server))
