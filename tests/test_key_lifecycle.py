"""A key's lifecycle: expiry, rotation with a grace period, and an IP
allowlist (README: Key lifecycle). Over real HTTP and WebSockets on the
stand-in; addresses other than loopback come from a trusted proxy's
X-Forwarded-For (the peer is always 127.0.0.1 here)."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import aiohttp
import pytest
import requests

from conftest import (ON_POSTGRES, drop_postgres_database, old_database, fresh_postgres_database, host_db_file, package_module,
                      query_database, query_url)
from test_websocket_access import (PASSWORD, admin_session, cookie_header, handshake_status, in_thread,
                                   open_socket, revoked, still_open, until_closed)

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFRESH = 0.5
FAST = {"COMFYUI_API_AUTH_REFRESH_INTERVAL": str(REFRESH), "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"}
LOCKED = {"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD, **FAST}


@pytest.fixture
def locked(make_host):
    """require mode, an admin password, no local trust."""
    return make_host(env=LOCKED)


@pytest.fixture
def proxied(make_host):
    """As ``locked``, behind a trusted proxy on loopback: X-Forwarded-For says who the client is."""
    return make_host(env={**LOCKED, "COMFYUI_API_AUTH_TRUSTED_PROXIES": "127.0.0.1,::1"})


def bearer(api_key, client=None):
    headers = {"Authorization": f"Bearer {api_key}"}
    if client is not None:
        headers["X-Forwarded-For"] = client
    return headers


def code_of(response):
    try:
        return response.json().get("error_code")
    except ValueError:
        return None


def status_and_code(host, headers, path="/api/features"):
    response = requests.get(host.url(path), headers=headers, timeout=10)
    return response.status_code, (None if response.status_code == 200 else code_of(response))


def sign_in(host, api_key, client=None):
    session = requests.Session()
    headers = {"X-Forwarded-For": client} if client else {}
    response = session.post(host.url("/api/auth/login"), json={"api_key": api_key}, headers=headers, timeout=10)
    return session, response


def this_hour(admin, host, key_id):
    return admin.get(host.url(f"/api/keys/{key_id}")).json()["requests_this_hour"]


# ---- expiry -------------------------------------------------------------------------------------

def test_a_key_works_until_it_expires_then_gets_key_expired_and_its_sockets_and_sessions_end(locked):
    admin = admin_session(locked)
    expires_at = time.time() + 3
    key = admin.post(locked.url("/api/keys"), json={"name": "short", "rate_limit": 1000,
                                                    "expires_at": expires_at}).json()
    assert key["expires_at"] == pytest.approx(expires_at) and key["expired"] is False
    never = admin.post(locked.url("/api/keys"), json={"name": "forever", "rate_limit": 1000}).json()
    assert never["expires_at"] is None
    for _ in range(3):  # the same header again and again: no cached answer outlives the expiry
        assert status_and_code(locked, bearer(key["api_key"])) == (200, None)
    session, response = sign_in(locked, key["api_key"])
    assert response.status_code == 200

    async def go():
        async with aiohttp.ClientSession() as client:
            by_header = await open_socket(client, locked, bearer(key["api_key"]))
            by_session = await open_socket(client, locked, cookie_header(session))
            other = await open_socket(client, locked, bearer(never["api_key"]))
            results = [await until_closed(socket, timeout=expires_at - time.time() + 3 * REFRESH + 2)
                       for socket in (by_header, by_session)]
            closed_at = time.time()
            assert await still_open(other)
            return results, closed_at

    results, closed_at = asyncio.run(go())
    for messages, close_code in results:
        assert revoked(messages, "key_expired") and close_code == 4401, (messages, close_code)
    assert expires_at <= closed_at <= expires_at + REFRESH + 1.5
    assert status_and_code(locked, bearer(key["api_key"])) == (401, "KEY_EXPIRED")
    assert status_and_code(locked, {"X-API-Key": key["api_key"]}) == (401, "KEY_EXPIRED")
    assert session.get(locked.url("/api/features")).status_code == 401  # the session ended with the key
    assert asyncio.run(handshake_status(locked, bearer(key["api_key"]))) == 401
    assert sign_in(locked, key["api_key"])[1].status_code == 401
    assert status_and_code(locked, bearer(never["api_key"])) == (200, None)
    listed = {item["key_id"]: item for item in admin.get(locked.url("/api/keys")).json()["keys"]}
    assert listed[key["key_id"]]["expired"] is True and listed[never["key_id"]]["expired"] is False


def test_expiry_is_set_with_expires_in_days_changed_and_cleared_with_patch(locked):
    admin = admin_session(locked)
    before = time.time()
    key = admin.post(locked.url("/api/keys"), json={"name": "days", "expires_in_days": 3}).json()
    assert before + 3 * 86400 <= key["expires_at"] <= time.time() + 3 * 86400
    url = locked.url(f"/api/keys/{key['key_id']}")
    assert status_and_code(locked, bearer(key["api_key"])) == (200, None)
    changed = admin.patch(url, json={"expires_at": time.time() - 1})
    assert changed.status_code == 200 and changed.json()["expired"] is True
    assert status_and_code(locked, bearer(key["api_key"])) == (401, "KEY_EXPIRED")
    cleared = admin.patch(url, json={"expires_at": None})  # null: never (not "unchanged")
    assert cleared.status_code == 200 and cleared.json()["expires_at"] is None
    assert status_and_code(locked, bearer(key["api_key"])) == (200, None)
    assert admin.get(url).json()["expires_at"] is None
    # a PATCH without the field keeps it
    admin.patch(url, json={"expires_at": time.time() + 600})
    assert admin.patch(url, json={"name": "renamed"}).json()["expires_at"] is not None


@pytest.mark.parametrize("body", [
    {"expires_at": "tomorrow"}, {"expires_at": True}, {"expires_at": -5}, {"expires_at": 1e300},
    {"expires_at": 1000}, {"expires_in_days": 0}, {"expires_in_days": 1.5}, {"expires_in_days": "3"},
    {"expires_in_days": 10**6}, {"expires_in_days": 3, "expires_at": 4102444800},
])
def test_bad_expiry_values_are_refused(host, body):
    response = host.post("/api/keys", json={"name": "bad", **body})
    assert response.status_code == 400, response.text
    assert code_of(response) == "INVALID_FIELD"


# ---- rotation -----------------------------------------------------------------------------------

def rotate(session, host, key_id, grace):
    return session.post(host.url(f"/api/keys/{key_id}/rotate"), json={"grace_seconds": grace}, timeout=10)


def test_rotation_keeps_the_key_and_both_secrets_share_one_limit(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "rotated", "rate_limit": 5, "scopes": ["read"],
                                                    "metadata": {"team": "a"}}).json()
    response = rotate(admin, locked, key["key_id"], 3600)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    rotated = response.json()
    assert rotated["api_key"] != key["api_key"] and rotated["api_key"].startswith("comfy_")
    for field in ("key_id", "name", "scopes", "metadata", "rate_limit", "created_at"):
        assert rotated[field] == key[field]
    assert rotated["previous_key_valid_until"] == pytest.approx(time.time() + 3600, abs=30)
    statuses = [status_and_code(locked, bearer(key["api_key"]))[0] for _ in range(3)]
    statuses += [status_and_code(locked, bearer(rotated["api_key"]))[0] for _ in range(3)]
    assert statuses == [200, 200, 200, 200, 200, 429]
    assert status_and_code(locked, bearer(key["api_key"])) == (429, "RATE_LIMIT_EXCEEDED")
    events = admin.get(locked.url("/api/audit")).json()["events"]
    assert any(event["action"] == "key_rotate" and event["target"] == key["key_id"]
               and event["detail"] == {"grace_seconds": 3600} for event in events)
    assert key["api_key"] not in json.dumps(events) and rotated["api_key"] not in json.dumps(events)


def test_after_the_grace_period_the_old_secret_its_sessions_and_sockets_end_and_the_new_ones_stay(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "graceful", "rate_limit": 1000}).json()
    old_session, response = sign_in(locked, key["api_key"])
    assert response.status_code == 200
    grace = 3
    rotated = rotate(admin, locked, key["key_id"], grace).json()
    grace_ends = rotated["previous_key_valid_until"]
    assert status_and_code(locked, bearer(key["api_key"])) == (200, None)
    assert old_session.get(locked.url("/api/features")).status_code == 200
    in_grace_session, response = sign_in(locked, key["api_key"])  # the old secret still signs in
    assert response.status_code == 200
    new_session, response = sign_in(locked, rotated["api_key"])
    assert response.status_code == 200

    async def go():
        async with aiohttp.ClientSession() as client:
            old = [await open_socket(client, locked, bearer(key["api_key"])),
                   await open_socket(client, locked, cookie_header(old_session)),
                   await open_socket(client, locked, cookie_header(in_grace_session))]
            new = [await open_socket(client, locked, bearer(rotated["api_key"])),
                   await open_socket(client, locked, cookie_header(new_session))]
            results = [await until_closed(socket, timeout=grace_ends - time.time() + 3 * REFRESH + 2)
                       for socket in old]
            for socket in new:
                assert await still_open(socket)
            return results

    for messages, close_code in asyncio.run(go()):
        assert revoked(messages, "key_rotated") and close_code == 4401, (messages, close_code)
    assert time.time() >= grace_ends
    assert status_and_code(locked, bearer(key["api_key"])) == (401, "INVALID_KEY")
    assert status_and_code(locked, {"X-API-Key": key["api_key"]}) == (401, "INVALID_KEY")
    assert old_session.get(locked.url("/api/features")).status_code == 401
    assert in_grace_session.get(locked.url("/api/features")).status_code == 401
    assert sign_in(locked, key["api_key"])[1].status_code == 401
    assert new_session.get(locked.url("/api/features")).status_code == 200
    assert status_and_code(locked, bearer(rotated["api_key"])) == (200, None)
    assert admin.get(locked.url(f"/api/keys/{key['key_id']}")).json()["previous_key_valid_until"] is None


def test_rotating_without_grace_ends_the_old_secret_and_its_sessions_at_once_and_keeps_usage(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "now", "rate_limit": 1000}).json()
    for _ in range(4):
        assert status_and_code(locked, bearer(key["api_key"])) == (200, None)
    old_session, _ = sign_in(locked, key["api_key"])
    used = this_hour(admin, locked, key["key_id"])

    async def go():
        async with aiohttp.ClientSession() as client:
            socket = await open_socket(client, locked, bearer(key["api_key"]))
            response = await in_thread(rotate, admin, locked, key["key_id"], 0)
            return response, await until_closed(socket, timeout=REFRESH / 2)

    response, (messages, close_code) = asyncio.run(go())
    assert response.status_code == 200 and response.json()["previous_key_valid_until"] is None
    assert revoked(messages, "key_rotated") and close_code == 4401
    assert status_and_code(locked, bearer(key["api_key"])) == (401, "INVALID_KEY")
    assert old_session.get(locked.url("/api/features")).status_code == 401
    assert status_and_code(locked, bearer(response.json()["api_key"])) == (200, None)
    assert this_hour(admin, locked, key["key_id"]) >= used + 1  # the same counters go on
    rows = query_database(locked, "SELECT COUNT(*) FROM api_auth_sessions s JOIN api_auth_keys k "
                                  f"ON k.id = s.key_pk WHERE k.key_id = '{key['key_id']}' AND s.ended_at IS NULL")
    assert int(rows[0][0]) == 0


def test_two_concurrent_rotations_leave_one_current_and_one_previous_secret(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "raced", "rate_limit": 1000}).json()
    results, start = [None, None], threading.Barrier(2)

    def one(index):
        session = requests.Session()
        session.cookies.update(admin.cookies)
        start.wait()
        results[index] = rotate(session, locked, key["key_id"], 3600)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [result.status_code for result in results] == [200, 200]
    secrets = [result.json()["api_key"] for result in results]
    assert secrets[0] != secrets[1]
    # serialised: the second rotation's old secret is the first one's new secret;
    # the original, two rotations back, no longer works
    assert status_and_code(locked, bearer(key["api_key"])) == (401, "INVALID_KEY")
    assert [status_and_code(locked, bearer(secret))[0] for secret in secrets] == [200, 200]
    rows = query_database(locked, f"SELECT generation FROM api_auth_keys WHERE key_id = '{key['key_id']}'")
    assert int(rows[0][0]) == 2


@pytest.mark.parametrize("body", [{"grace_seconds": -1}, {"grace_seconds": 2592001}, {"grace_seconds": True},
                                  {"grace_seconds": "60"}, {"grace_seconds": 1.5}, {"grace": 60}, []])
def test_bad_rotation_bodies_are_refused_and_change_nothing(host, body):
    key = host.create_key("kept")
    response = host.post(f"/api/keys/{key['key_id']}/rotate", json=body)
    assert response.status_code == 400, response.text
    assert status_and_code(host, bearer(key["api_key"])) == (200, None)


def test_rotation_needs_an_admin_and_a_key(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "mine", "scopes": ["generate"]}).json()
    refused = requests.post(locked.url(f"/api/keys/{key['key_id']}/rotate"), json={"grace_seconds": 0},
                            headers=bearer(key["api_key"]), timeout=10)
    assert refused.status_code == 403  # a key without the admin scope cannot rotate (even itself)
    assert status_and_code(locked, bearer(key["api_key"])) == (200, None)
    assert rotate(admin, locked, "NoSuchKey123", 0).status_code == 404


def test_the_local_bootstrap_may_rotate_a_non_admin_key(fresh_host):
    key = fresh_host.create_key("bootstrapped")
    response = fresh_host.post(f"/api/keys/{key['key_id']}/rotate", json={"grace_seconds": 0})
    assert response.status_code == 200, response.text
    assert status_and_code(fresh_host, bearer(response.json()["api_key"]))[0] == 200


# ---- IP allowlist ---------------------------------------------------------------------------------

def test_an_allowlisted_key_works_only_from_its_addresses_and_refusals_are_not_charged(proxied):
    admin = admin_session(proxied)
    key = admin.post(proxied.url("/api/keys"), json={
        "name": "office", "rate_limit": 1000, "allowed_ips": ["203.0.113.0/24", "2001:db8::/32", "192.0.2.9"]}).json()
    assert key["allowed_ips"] == ["203.0.113.0/24", "2001:db8::/32", "192.0.2.9/32"]
    for client in ("203.0.113.7", "2001:db8::5", "192.0.2.9", "198.51.100.1, 203.0.113.200"):
        assert status_and_code(proxied, bearer(key["api_key"], client)) == (200, None), client
    used = this_hour(admin, proxied, key["key_id"])
    for client in ("198.51.100.1", "192.0.2.10", "2001:db9::1", "203.0.113.7, 198.51.100.1", None):
        # the same header value as the allowed requests above: no cached answer lets it through
        assert status_and_code(proxied, bearer(key["api_key"], client)) == (403, "IP_NOT_ALLOWED"), client
        headers = {"X-API-Key": key["api_key"], **({"X-Forwarded-For": client} if client else {})}
        assert status_and_code(proxied, headers) == (403, "IP_NOT_ALLOWED"), client
    assert this_hour(admin, proxied, key["key_id"]) == used
    # cleared: from anywhere again
    cleared = admin.patch(proxied.url(f"/api/keys/{key['key_id']}"), json={"allowed_ips": []})
    assert cleared.status_code == 200 and cleared.json()["allowed_ips"] == []
    assert status_and_code(proxied, bearer(key["api_key"], "198.51.100.1")) == (200, None)


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(locked):
    admin = admin_session(locked)
    office = admin.post(locked.url("/api/keys"), json={"name": "office", "allowed_ips": ["203.0.113.0/24"]}).json()
    local = admin.post(locked.url("/api/keys"), json={"name": "local", "allowed_ips": ["127.0.0.1"]}).json()
    assert status_and_code(locked, bearer(office["api_key"], "203.0.113.7")) == (403, "IP_NOT_ALLOWED")
    assert status_and_code(locked, bearer(local["api_key"], "198.51.100.1")) == (200, None)


def test_an_allowlisted_key_signs_in_only_from_its_addresses_and_its_session_stays_there(proxied):
    admin = admin_session(proxied)
    key = admin.post(proxied.url("/api/keys"), json={"name": "office", "allowed_ips": ["203.0.113.0/24"]}).json()
    _, refused = sign_in(proxied, key["api_key"], "198.51.100.1")
    assert refused.status_code == 403 and code_of(refused) == "IP_NOT_ALLOWED"
    session, response = sign_in(proxied, key["api_key"], "203.0.113.7")
    assert response.status_code == 200
    assert session.get(proxied.url("/api/features"), headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 200
    elsewhere = session.get(proxied.url("/api/features"), headers={"X-Forwarded-For": "198.51.100.1"})
    assert elsewhere.status_code == 403 and code_of(elsewhere) == "IP_NOT_ALLOWED"
    assert asyncio.run(handshake_status(proxied, {**cookie_header(session), "X-Forwarded-For": "198.51.100.1"})) == 403


def test_narrowing_the_allowlist_closes_sockets_from_addresses_it_no_longer_has(proxied):
    admin = admin_session(proxied)
    key = admin.post(proxied.url("/api/keys"), json={"name": "moving", "rate_limit": 1000}).json()

    async def go():
        async with aiohttp.ClientSession() as client:
            outside = await open_socket(client, proxied, bearer(key["api_key"], "198.51.100.1"))
            inside = await open_socket(client, proxied, bearer(key["api_key"], "203.0.113.7"))
            response = await in_thread(admin.patch, proxied.url(f"/api/keys/{key['key_id']}"),
                                       json={"allowed_ips": ["203.0.113.0/24"]})
            assert response.status_code == 200
            result = await until_closed(outside, timeout=5)
            assert await still_open(inside)
            return result

    messages, close_code = asyncio.run(go())
    assert revoked(messages, "ip_not_allowed") and close_code == 4401


@pytest.mark.parametrize("allowed", [
    ["10.0.0.1/8"], ["300.1.1.1"], ["10.0.0.0/33"], ["fe80::1%eth0"], [""], [" 10.0.0.1"], [5], "10.0.0.1",
    ["::ffff:10.0.0.0/104"], ["2001:db8::1/32"], [f"10.0.{i // 256}.{i % 256}" for i in range(101)],
    ["example.com"], [None],
])
def test_bad_allowlists_are_refused_on_create_and_on_patch(host, allowed):
    response = host.post("/api/keys", json={"name": "bad", "allowed_ips": allowed})
    assert response.status_code == 400 and code_of(response) == "INVALID_FIELD", response.text
    key = host.create_key("good")
    response = host.patch(f"/api/keys/{key['key_id']}", json={"allowed_ips": allowed})
    assert response.status_code == 400 and code_of(response) == "INVALID_FIELD", response.text
    assert host.get(f"/api/keys/{key['key_id']}").json()["allowed_ips"] == []


# ---- what a key holder sees ------------------------------------------------------------------------

def test_a_key_holder_sees_its_scopes_expiry_and_allowlist_in_its_usage(proxied):
    admin = admin_session(proxied)
    expires_at = time.time() + 86400
    key = admin.post(proxied.url("/api/keys"), json={
        "name": "holder", "scopes": ["read"], "expires_at": expires_at, "allowed_ips": ["203.0.113.0/24"]}).json()
    usage = requests.get(proxied.url("/api/usage"), headers=bearer(key["api_key"], "203.0.113.1"), timeout=10)
    assert usage.status_code == 200
    body = usage.json()
    assert body["scopes"] == ["read"]
    assert body["expires_at"] == pytest.approx(expires_at) and body["expired"] is False
    assert body["allowed_ips"] == ["203.0.113.0/24"]
    assert body["previous_key_valid_until"] is None


# ---- the command line -------------------------------------------------------------------------------

def cli(host, *args):
    url = host.env.get("COMFYUI_API_AUTH_DB") or f"sqlite:///{host_db_file(host)}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMFYUI_")}
    return subprocess.run([sys.executable, REPOSITORY, "--db", url, *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_the_command_line_creates_expiring_keys_lists_expiry_and_rotates(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_REFRESH_INTERVAL": "0.2"})
    created = cli(host, "create-key", "--name", "cli", "--expires-in-days", "2", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["expires_at"] == pytest.approx(time.time() + 2 * 86400, abs=60)
    listed = cli(host, "list-keys")
    assert "expires " in listed.stdout and "cli" in listed.stdout
    assert json.loads(cli(host, "list-keys", "--json").stdout)[0]["expires_at"] == key["expires_at"]
    assert cli(host, "create-key", "--name", "bad", "--expires-in-days", "0").returncode != 0
    deadline = time.time() + 5
    while status_and_code(host, bearer(key["api_key"]))[0] != 200:
        assert time.time() < deadline
        time.sleep(0.1)
    rotated = cli(host, "rotate-key", key["key_id"], "--grace-seconds", "0", "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)["api_key"]
    deadline = time.time() + 5
    while status_and_code(host, bearer(key["api_key"]))[0] != 401 or status_and_code(host, bearer(new))[0] != 200:
        assert time.time() < deadline, "the running server never picked up the rotation"
        time.sleep(0.1)
    assert status_and_code(host, bearer(key["api_key"])) == (401, "INVALID_KEY")
    assert cli(host, "rotate-key", "NoSuchKey123").returncode != 0
    assert cli(host, "rotate-key", key["key_id"], "--grace-seconds", "-1").returncode != 0


# ---- schema v5 -----------------------------------------------------------------------------------

def test_a_version_4_database_is_upgraded_and_its_keys_and_sessions_keep_working(make_host, tmp_path):
    migrations = package_module("storage.migrations")
    made = package_module("core.keys").new_key()
    url = fresh_postgres_database() if ON_POSTGRES else f"sqlite:///{tmp_path / 'v4' / 'auth.db'}"
    try:
        old_database(url, 4, [(made, "from v4", "admin")])  # a key as version 4 stored it
        host = make_host(env={"COMFYUI_API_AUTH_DB": url, "COMFYUI_API_AUTH": "require"})
        assert f"schema upgraded from version 4 to {migrations.LATEST}" in host.log()
        headers = {"X-API-Key": made.plaintext}
        listed = host.get("/api/keys", headers=headers).json()["keys"][0]
        assert listed["name"] == "from v4" and listed["expires_at"] is None and listed["allowed_ips"] == []
        session, response = sign_in(host, made.plaintext)
        assert response.status_code == 200
        rotated = host.post(f"/api/keys/{made.key_id}/rotate", json={"grace_seconds": 60}, headers=headers)
        assert rotated.status_code == 200
        assert session.get(host.url("/api/keys")).status_code == 200  # opened with the old secret, in its grace
        assert query_url(url, "SELECT number FROM api_auth_meta WHERE name = 'schema_version'") == [(migrations.LATEST,)]
        assert query_url(url, "SELECT generation, previous_key_hash FROM api_auth_keys") == [(1, made.key_hash)]
    finally:
        if ON_POSTGRES:
            drop_postgres_database(url)
