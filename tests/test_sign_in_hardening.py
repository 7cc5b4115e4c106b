"""Sign-in under attack, over real HTTP against the ComfyUI stand-in:

* the failed-attempt throttle holds against concurrent bursts, slow bodies and
  several processes sharing a database, and bcrypt work is capped;
* a password change, and "sign out everywhere" (HTTP and command line), end
  sessions at once on this process and within the refresh interval elsewhere;
* sessions per key and admin password sessions are bounded, a key sign-in
  spends the key's hourly limit, and old audit rows are purged;
* a database of schema version 2 is upgraded (the sign-in attempts table).
"""

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time

import aiohttp
import pytest
import requests

from conftest import (ON_POSTGRES, REPO, drop_postgres_database, old_database, fresh_postgres_database, host_db_file,
                      package_module, query_database, query_url)

PASSWORD = "correct horse battery staple"
COOKIE = "comfyui_api_auth"
LIMIT = 10  # COMFYUI_API_AUTH_LOGIN_ATTEMPTS by default
REMOTE = {"X-Forwarded-For": "198.51.100.7"}  # not a trusted local request


def login_burst(host_urls, bodies, local_addresses=None):
    """POST every body to /api/auth/login at once (round robin over the hosts):
    [(status, error_code)], and the wall time."""
    async def go():
        async def one(index, body):
            local = local_addresses[index] if local_addresses else None
            connector = aiohttp.TCPConnector(local_addr=(local, 0) if local else None, force_close=True)
            async with aiohttp.ClientSession(connector=connector) as client:
                url = host_urls[index % len(host_urls)] + "/api/auth/login"
                async with client.post(url, json=body, timeout=aiohttp.ClientTimeout(total=600)) as response:
                    payload = await response.json()
                    return response.status, payload.get("error_code")
        started = time.perf_counter()
        results = await asyncio.gather(*(one(i, body) for i, body in enumerate(bodies)))
        return results, time.perf_counter() - started
    return asyncio.run(go())


def audit_actions(host, action, **request_options):
    response = requests.get(host.url("/api/audit?limit=1000"), timeout=30, **request_options)
    assert response.status_code == 200, response.text
    return [event for event in response.json()["events"] if event["action"] == action]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_cli(host, *args, stdin=None):
    """The package's command line against a host's database (like Host.cli, with input)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_API_AUTH")}
    env.update(host.env)
    return subprocess.run([sys.executable, REPO, "--user-directory", host.user_dir, *args], input=stdin,
                          capture_output=True, text=True, check=True, env=env)


def execute(host_or_url, statement, parameters=()):
    """Run a write statement on a host's database (SQLite file or PostgreSQL) and commit."""
    url = host_or_url if isinstance(host_or_url, str) else (
        host_or_url.own_database or host_or_url.env.get("COMFYUI_API_AUTH_DB", ""))
    if url.startswith("postgres"):
        import psycopg2
        connection = psycopg2.connect(url)
        try:
            with connection:
                connection.cursor().execute(statement.replace("?", "%s"), parameters)
        finally:
            connection.close()
        return
    path = url[len("sqlite:///"):] if url else host_db_file(host_or_url)
    with sqlite3.connect(path) as connection:
        connection.execute(statement, parameters)


def signed_in(host, body, expect=200):
    response = requests.post(host.url("/api/auth/login"), json=body, timeout=30)
    assert response.status_code == expect, response.text
    return response.cookies.get(COOKIE)


def status_with(host, token, path="/api/keys"):
    return requests.get(host.url(path), cookies={COOKIE: token}, headers=REMOTE, timeout=10).status_code


@pytest.fixture
def shared_pair(make_host, tmp_path):
    """Two processes on one database (SQLite file, or PostgreSQL under TEST_DATABASE_URL)."""
    def make(**env):
        url = fresh_postgres_database() if ON_POSTGRES else f"sqlite:///{tmp_path / 'shared' / 'auth.db'}"
        made.append(url)
        env = {"COMFYUI_API_AUTH_DB": url, "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2",
               "COMFYUI_API_AUTH_REFRESH_INTERVAL": "1", **env}
        return [make_host(env=env) for _ in range(2)]
    made = []
    yield make
    if ON_POSTGRES:
        for url in made:
            drop_postgres_database(url)


# ---- 9. the failed-attempt throttle ------------------------------------------------------------

def test_concurrent_wrong_passwords_are_evaluated_at_most_the_limit(make_host):
    # Many password checks at once allowed, so only the throttle bounds the burst.
    host = make_host(env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD, "COMFYUI_API_AUTH_LOGIN_CONCURRENCY": "64"})
    results, wall = login_burst([host.base], [{"password": f"wrong {i}"} for i in range(40)])
    evaluated = [r for r in results if r[0] == 401]
    print(f"\n40 concurrent wrong passwords: {len(evaluated)} evaluated, "
          f"{len(results) - len(evaluated)} refused with 429, {wall:.2f} s")
    assert len(evaluated) <= LIMIT
    assert all(r == (429, "TOO_MANY_ATTEMPTS") for r in results if r[0] != 401), results
    assert len(audit_actions(host, "sign_in_failed")) == len(evaluated)
    # the address has spent its attempts: even the right password waits now
    assert signed_in(host, {"password": PASSWORD}, expect=429) is None


def test_slow_body_attempts_are_counted_before_their_body_is_read(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD, "COMFYUI_API_AUTH_LOGIN_CONCURRENCY": "64"})
    body = json.dumps({"password": "wrong password"}).encode()
    head = (f"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1:{host.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()

    async def go(count):
        connections = []
        for _ in range(count):  # headers and one byte of the body, then nothing
            reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
            writer.write(head + body[:1])
            await writer.drain()
            connections.append((reader, writer, asyncio.ensure_future(reader.readline())))
        await asyncio.sleep(2.0)
        early = [task.result() for _, _, task in connections if task.done()]
        waiting = [(writer, task) for _, writer, task in connections if not task.done()]
        for writer, _ in waiting:  # now the rest of each body
            writer.write(body[1:])
            await writer.drain()
        late = await asyncio.gather(*(asyncio.wait_for(task, 60) for _, task in waiting))
        for _, writer, _ in connections:
            writer.close()
        return early, late

    early, late = asyncio.run(go(300))
    print(f"\n300 slow-body attempts: {len(early)} refused before their body was read, "
          f"{sum(b' 401 ' in line for line in late)} evaluated")
    assert len(early) >= 300 - LIMIT
    assert all(b" 429 " in line for line in early), early[:3]
    assert sum(b" 401 " in line for line in late) <= LIMIT
    assert len(audit_actions(host, "sign_in_failed")) <= LIMIT


def test_a_burst_from_150_addresses_runs_few_password_checks(make_host):
    """Each address is within its own limit here; the cap on password checks in
    flight (2 by default) is what bounds the CPU time."""
    host = make_host(env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    bcrypt = pytest.importorskip("bcrypt")
    hashed = bcrypt.hashpw(b"x", bcrypt.gensalt(12))
    started = time.process_time()
    bcrypt.checkpw(b"y", hashed)
    one_check = time.process_time() - started
    addresses = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(150)]
    cpu_before = cpu_seconds(host.process.pid)
    results, wall = login_burst([host.base], [{"password": f"wrong {i}"} for i in range(150)], addresses)
    cpu = cpu_seconds(host.process.pid) - cpu_before
    evaluated = sum(1 for r in results if r[0] == 401)
    print(f"\n150 concurrent wrong passwords from 150 addresses: {evaluated} evaluated, "
          f"{sum(1 for r in results if r[1] == 'SIGN_IN_BUSY')} refused as busy; wall {wall:.2f} s, "
          f"server CPU {cpu:.2f} s (one bcrypt check: {one_check:.2f} s CPU)")
    assert all(r == (401, "INVALID_CREDENTIALS") or r == (429, "SIGN_IN_BUSY") for r in results), results
    assert evaluated <= 30
    assert cpu < 0.25 * 150 * one_check  # evaluating them all would cost 150 checks
    audit = audit_actions(host, "sign_in_failed")
    assert len(audit) == evaluated and len({event["client"] for event in audit}) == evaluated


def test_two_processes_sharing_a_database_allow_the_limit_together(shared_pair):
    hosts = shared_pair(COMFYUI_API_AUTH_ADMIN_PASSWORD=PASSWORD, COMFYUI_API_AUTH_LOGIN_CONCURRENCY="64")
    burst, _ = login_burst([host.base for host in hosts], [{"password": f"wrong {i}"} for i in range(40)])
    one_by_one = [hosts[i % 2].post("/api/auth/login", json={"password": f"again {i}"}).status_code
                  for i in range(20)]
    evaluated = sum(1 for r in burst if r[0] == 401) + one_by_one.count(401)
    print(f"\ntwo processes: {evaluated} attempts evaluated of 60 (limit {LIMIT}, no slack)")
    assert evaluated <= LIMIT
    assert set(one_by_one) == {429}
    time.sleep(0.5)  # both processes flush their audit rows (0.2 s)
    assert len(audit_actions(hosts[0], "sign_in_failed")) == evaluated
    # the right password from this address waits too, on either process
    assert [host.post("/api/auth/login", json={"password": PASSWORD}).status_code for host in hosts] == [429, 429]


def test_a_successful_sign_in_gives_its_attempt_back(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD, "COMFYUI_API_AUTH_LOGIN_ATTEMPTS": "3"})
    key = host.create_key("mine", rate_limit=1000)
    for _ in range(5):  # far more than 3: good attempts never count
        signed_in(host, {"api_key": key["api_key"]})
    signed_in(host, {"password": PASSWORD})
    assert [host.post("/api/auth/login", json={"password": "wrong"}).status_code for _ in range(4)] == [401] * 3 + [429]
    rows = query_database(host, "SELECT count(*) FROM api_auth_login_attempts")
    assert rows == [(3,)]


# ---- 11. password change, sign out everywhere --------------------------------------------------

def test_a_password_change_ends_the_other_admin_sessions_on_every_process(shared_pair):
    # Not from the environment: a password set there is managed there (PUT answers 409).
    hosts = shared_pair(COMFYUI_API_AUTH="require")
    run_cli(hosts[0], "set-password", "--password-stdin", stdin=PASSWORD + "\n")
    mine, other = signed_in(hosts[0], {"password": PASSWORD}), signed_in(hosts[0], {"password": PASSWORD})
    deadline = time.time() + 5
    while status_with(hosts[1], other) != 200:  # the second process knows the session
        assert time.time() < deadline
        time.sleep(0.1)
    changed = requests.put(hosts[0].url("/api/auth/password"), json={"password": "a brand new password"},
                           cookies={COOKIE: mine}, timeout=30)
    assert changed.status_code == 200
    started = time.time()
    assert status_with(hosts[0], other) == 401  # at once on this process
    assert status_with(hosts[0], mine) == 200   # the caller's own session stays
    assert changed.json()["sessions_ended"] == 1
    while status_with(hosts[1], other) != 401:
        assert time.time() - started < 1 + 2, "the second process kept the ended session"
        time.sleep(0.05)
    print(f"\nended session refused by the second process after {time.time() - started:.2f} s (refresh 1 s)")
    assert status_with(hosts[1], mine) == 200
    signed_in(hosts[1], {"password": PASSWORD}, expect=401)
    signed_in(hosts[1], {"password": "a brand new password"})
    events = audit_actions(hosts[0], "password_set", cookies={COOKIE: mine}, headers=REMOTE)
    assert events[0]["actor"] == "admin:session" and events[0]["detail"]["sessions_ended"] == 1


def test_cli_set_password_ends_every_admin_session(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_REFRESH_INTERVAL": "0.5"})
    run_cli(host, "set-password", "--password-stdin", stdin=PASSWORD + "\n")  # the CLI refuses an env-managed one
    sessions = [signed_in(host, {"password": PASSWORD}) for _ in range(2)]
    key = requests.post(host.url("/api/keys"), json={"name": "k", "rate_limit": 1000},
                        cookies={COOKIE: sessions[0]}, timeout=10).json()
    key_session = signed_in(host, {"api_key": key["api_key"]})
    output = run_cli(host, "set-password", "--password-stdin", stdin="another long password\n").stdout
    deadline = time.time() + 3
    while any(status_with(host, token) != 401 for token in sessions):
        assert time.time() < deadline, "the server kept sessions of the old password"
        time.sleep(0.05)
    assert "2 admin sessions ended" in output
    assert status_with(host, key_session, "/api/usage") == 200  # a key session does not hang on the password
    events = audit_actions(host, "password_set",
                           cookies={COOKIE: signed_in(host, {"password": "another long password"})})
    assert events[0]["actor"] == "cli" and events[0]["detail"]["sessions_ended"] == 2


def test_sign_out_everywhere_over_http_on_every_process(shared_pair):
    hosts = shared_pair(COMFYUI_API_AUTH="require", COMFYUI_API_AUTH_ADMIN_PASSWORD=PASSWORD)
    admin = signed_in(hosts[0], {"password": PASSWORD})
    key = requests.post(hosts[0].url("/api/keys"), json={"name": "k", "rate_limit": 1000},
                        cookies={COOKIE: admin}, timeout=10).json()
    deadline = time.time() + 5
    while requests.get(hosts[1].url("/api/usage"), headers={"X-API-Key": key["api_key"]}, timeout=10).status_code != 200:
        assert time.time() < deadline, "the key never reached the second process"
        time.sleep(0.1)
    others = [signed_in(hosts[0], {"password": PASSWORD}), signed_in(hosts[1], {"api_key": key["api_key"]})]
    key_session = signed_in(hosts[0], {"api_key": key["api_key"]})
    time.sleep(1.5)  # both processes know every session
    end_all = "/api/auth/sessions/end-all"
    # not for key holders, nor for anyone anonymous
    refused = requests.post(hosts[0].url(end_all), cookies={COOKIE: key_session}, timeout=10)
    assert refused.status_code == 403
    assert requests.post(hosts[0].url(end_all), headers=REMOTE, timeout=10).status_code == 401
    kept = requests.post(hosts[0].url(end_all), json={"keep_current": True}, cookies={COOKIE: admin}, timeout=10)
    assert kept.status_code == 200 and kept.json()["ended"] == 3, kept.text
    assert "Set-Cookie" not in kept.headers
    started = time.time()
    assert [status_with(hosts[0], token, "/api/system_stats") for token in others + [key_session]] == [401] * 3
    assert status_with(hosts[0], admin) == 200
    while any(status_with(hosts[1], token, "/api/system_stats") != 401 for token in others + [key_session]):
        assert time.time() - started < 1 + 2, "the second process kept ended sessions"
        time.sleep(0.05)
    assert status_with(hosts[1], admin) == 200
    # and without keep_current: the caller's own session too, its cookie cleared
    everything = requests.post(hosts[0].url(end_all), cookies={COOKIE: admin}, timeout=10)
    assert everything.status_code == 200 and everything.json()["ended"] == 1
    assert f'{COOKIE}=""' in everything.headers["Set-Cookie"]
    assert status_with(hosts[0], admin) == 401
    assert requests.get(hosts[0].url("/api/keys"), headers={"X-API-Key": key["api_key"]}, timeout=10).status_code == 403
    time.sleep(0.5)
    admin = signed_in(hosts[0], {"password": PASSWORD})
    events = audit_actions(hosts[0], "sessions_ended", cookies={COOKIE: admin}, headers=REMOTE)
    assert [(e["actor"], e["detail"]) for e in events] == [
        ("admin:session", {"ended": 1, "kept_current": False}),
        ("admin:session", {"ended": 3, "kept_current": True})]


def test_sign_out_everywhere_from_the_command_line(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
                          "COMFYUI_API_AUTH_REFRESH_INTERVAL": "0.5"})
    admin = signed_in(host, {"password": PASSWORD})
    key = requests.post(host.url("/api/keys"), json={"name": "k", "rate_limit": 1000},
                        cookies={COOKIE: admin}, timeout=10).json()
    key_session = signed_in(host, {"api_key": key["api_key"]})
    output = run_cli(host, "sign-out-everywhere").stdout
    assert output.startswith("2 sessions ended")
    deadline = time.time() + 3
    while status_with(host, admin) != 401 or status_with(host, key_session, "/api/usage") != 401:
        assert time.time() < deadline, "the server kept sessions ended on the command line"
        time.sleep(0.05)
    assert requests.get(host.url("/api/usage"), headers={"X-API-Key": key["api_key"]}, timeout=10).status_code == 200
    events = audit_actions(host, "sessions_ended", cookies={COOKIE: signed_in(host, {"password": PASSWORD})})
    assert events[0]["actor"] == "cli" and events[0]["detail"]["ended"] == 2


# ---- 12. bounded sessions, key sign-ins spend the key's limit, audit retention -------------------

def test_key_sign_ins_keep_at_most_the_bound_of_live_sessions(make_host):
    host = make_host()
    key = host.create_key("browser", rate_limit=100000)
    tokens = [signed_in(host, {"api_key": key["api_key"]}) for _ in range(200)]
    live = query_database(host, "SELECT count(*) FROM api_auth_sessions s JOIN api_auth_keys k ON k.id = s.key_pk "
                                f"WHERE k.key_id = '{key['key_id']}' AND s.ended_at IS NULL")
    print(f"\n200 key sign-ins: {live[0][0]} live sessions")
    assert live == [(10,)]
    assert status_with(host, tokens[0], "/api/usage") == 401  # the oldest ended
    assert status_with(host, tokens[-11], "/api/usage") == 401
    assert [status_with(host, token, "/api/usage") for token in tokens[-10:]] == [200] * 10


def test_admin_password_sessions_are_bounded(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
                          "COMFYUI_API_AUTH_MAX_ADMIN_SESSIONS": "3"})
    tokens = [signed_in(host, {"password": PASSWORD}) for _ in range(4)]
    assert [status_with(host, token) for token in tokens] == [401, 200, 200, 200]


@pytest.mark.parametrize("shared_limits", ["on", "off"])
def test_a_key_sign_in_spends_one_request_of_the_keys_hourly_limit(make_host, shared_limits):
    host = make_host(env={"COMFYUI_API_AUTH_SHARED_LIMITS": shared_limits, "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    blocked = host.create_key("limit 0", rate_limit=0)
    refused = requests.post(host.url("/api/auth/login"), json={"api_key": blocked["api_key"]}, timeout=10)
    assert refused.status_code == 429 and refused.json()["error_code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.headers["X-RateLimit-Limit"] == "0" and int(refused.headers["Retry-After"]) > 0
    assert COOKIE not in refused.cookies
    five = host.create_key("limit 5", rate_limit=5)
    statuses = [requests.post(host.url("/api/auth/login"), json={"api_key": five["api_key"]}, timeout=10).status_code
                for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    listed = {k["name"]: k["requests_this_hour"] for k in host.get("/api/keys").json()["keys"]}
    assert listed == {"limit 0": 0, "limit 5": 5}
    assert query_database(host, "SELECT count(*) FROM api_auth_sessions") == [(5,)]
    # refused sign-ins of a good key are not failed attempts: the address may still sign in
    for _ in range(LIMIT):
        signed_in(host, {"api_key": blocked["api_key"]}, expect=429)
    signed_in(host, {"password": PASSWORD})


def test_audit_rows_older_than_the_retention_are_purged(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_AUDIT_RETENTION_DAYS": "30"})
    host.create_key("recent action")
    host.stop()
    day = 86400
    for age, action in ((31 * day, "very_old"), (29 * day, "fairly_old")):
        execute(host, "INSERT INTO api_auth_audit (at, actor, client, action, target, detail) "
                      "VALUES (?, 'cli', '', ?, '', '{}')", (time.time() - age, action))
    host.start()  # purged at start, then every hour
    deadline = time.time() + 5
    while "very_old" in {event["action"] for event in host.get("/api/audit").json()["events"]}:
        assert time.time() < deadline, "an audit row older than the retention was kept"
        time.sleep(0.1)
    assert {event["action"] for event in host.get("/api/audit").json()["events"]} >= {"fairly_old", "key_create"}


# ---- schema v3 -------------------------------------------------------------------------------------

def test_a_version_2_database_is_upgraded_with_its_data(make_host, tmp_path):
    migrations = package_module("storage.migrations")
    url = fresh_postgres_database() if ON_POSTGRES else f"sqlite:///{tmp_path / 'v2' / 'auth.db'}"
    try:
        made = package_module("core.keys").new_key()
        plaintext = made.plaintext
        old_database(url, 2, [(made, "from v2", "admin")])  # a key as version 2 stored it
        host = make_host(env={"COMFYUI_API_AUTH_DB": url, "COMFYUI_API_AUTH": "require"})
        assert f"schema upgraded from version 2 to {migrations.LATEST}" in host.log()
        assert host.get("/api/keys", headers={"X-API-Key": plaintext}).json()["keys"][0]["name"] == "from v2"
        assert host.post("/api/auth/login", json={"password": "no password set"}).status_code == 401
        assert query_url(url, "SELECT count(*) FROM api_auth_login_attempts") == [(1,)]
        assert query_url(url, "SELECT number FROM api_auth_meta WHERE name = 'schema_version'") == [(migrations.LATEST,)]
        signed_in(host, {"api_key": plaintext})
    finally:
        if ON_POSTGRES:
            drop_postgres_database(url)
