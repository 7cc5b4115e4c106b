"""Failure: kill -9 in the middle of a stream of writes and authenticated
requests, a database that refuses writes, a database unreachable at start.
Every case ends in a clear error and nothing acknowledged is lost."""

import sqlite3
import threading
import time

import pytest
import requests

from conftest import ON_POSTGRES, _postgres, host_db_file, query_database

FLUSH = 0.2


def without_detail(response):
    """A 503 that says only that the package is unavailable: anyone may read it, so
    no setting, database URL, host, password or driver error text (the log has them)."""
    body = response.json()
    assert response.status_code == 503 and body["error_code"] == "AUTH_UNAVAILABLE", response.text
    assert set(body) == {"error", "error_code"} and "server log" in body["error"], body
    for trace in ("Error", "postgres", "sqlite", "://", "127.0.0.1", "locked", "COMFYUI_API_AUTH", "schema",
                  "apiauth_", "/proc", "Secret"):
        assert trace not in response.text, (trace, response.text)
    return True


def test_kill_9_during_a_stream_of_creates_revokes_and_requests(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_FLUSH_INTERVAL": str(FLUSH)})
    steady = host.create_key("steady", rate_limit=10**9)
    created, deleted, served = [], [], []
    in_flight_delete = []  # a delete the server may have committed but not answered
    stop = threading.Event()

    def creates():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.post(host.url("/api/keys"), json={"name": f"k{len(created)}"}, timeout=5)
                except requests.RequestException:
                    return
                if response.status_code == 200:
                    created.append(response.json())

    def revokes():
        with requests.Session() as session:
            while not stop.is_set():
                candidates = [k for k in created[:-1] if k not in deleted]
                if not candidates:
                    time.sleep(0.01)
                    continue
                in_flight_delete[:] = [candidates[0]["key_id"]]
                try:
                    response = session.delete(host.url(f"/api/keys/{candidates[0]['key_id']}"), timeout=5)
                except requests.RequestException:
                    return
                if response.status_code == 200:
                    deleted.append(candidates[0])

    def requests_with_key():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.get(host.url("/api/features"), headers={"X-API-Key": steady["api_key"]}, timeout=5)
                except requests.RequestException:
                    return
                if response.status_code == 200:
                    served.append(time.time())

    workers = [threading.Thread(target=job) for job in (creates, revokes, requests_with_key)]
    for worker in workers:
        worker.start()
    time.sleep(2.0)
    killed_at = time.time()
    host.kill()
    stop.set()
    for worker in workers:
        worker.join()
    host.start()

    listed = {k["key_id"] for k in host.get("/api/keys").json()["keys"]}
    alive = [k for k in created if k not in deleted]
    assert {k["key_id"] for k in alive} - set(in_flight_delete) <= listed, "an acknowledged create was lost"
    assert not {k["key_id"] for k in deleted} & listed, "an acknowledged revoke was lost"
    for key in alive[-5:]:
        if key["key_id"] in in_flight_delete:
            continue  # its delete may have been committed; the server died before saying so
        response = host.get("/api/usage", headers={"X-API-Key": key["api_key"]})
        assert response.status_code == 200, (response.text, key["key_id"] in listed)
    for key in deleted[-5:]:
        assert host.get("/api/usage", headers={"X-API-Key": key["api_key"]}).status_code == 401
    if not ON_POSTGRES:
        assert query_database(host, "PRAGMA integrity_check") == [("ok",)]
    counted = host.get(f"/api/keys/{steady['key_id']}").json()["usage_stats"]["total_requests"]
    window = [t for t in served if t > killed_at - 2 * FLUSH]
    lost = len(served) - counted
    print(f"\nkill -9 after {len(created)} creates, {len(deleted)} revokes, {len(served)} requests: "
          f"usage lost {lost} (allowed: the last flush window, {len(window)} requests)")
    assert len(created) > 10 and len(deleted) > 5 and len(served) > 50
    assert 0 <= lost <= len(window)


@pytest.mark.skipif(ON_POSTGRES, reason="locks the SQLite file from outside")
def test_a_database_that_refuses_writes_fails_closed_then_recovers(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_FLUSH_INTERVAL": str(FLUSH)})
    key = host.create_key("user", rate_limit=1000)
    headers = {"X-API-Key": key["api_key"]}
    assert host.get("/api/features", headers=headers).status_code == 200
    before = host.get("/api/keys").json()["keys"]
    blocker = sqlite3.connect(host_db_file(host), timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")  # every write now fails after the busy timeout
    try:
        created = host.post("/api/keys", json={"name": "during outage"}, timeout=30)
        assert without_detail(created)  # was "(OperationalError: database is locked)"
        assert "api_key" not in created.text
        for _ in range(3):
            host.get("/api/features", headers=headers)  # usage to flush: the flush now fails
        deadline = time.time() + 30
        while host.get("/api/features", headers=headers).status_code != 503:
            assert time.time() < deadline, "writes failing never closed the server"
            time.sleep(0.2)
        assert without_detail(host.get("/api/features", headers=headers))
        assert without_detail(host.get("/api/system_stats"))
    finally:
        blocker.rollback()
        blocker.close()
    deadline = time.time() + 30
    while host.get("/api/features", headers=headers).status_code != 200:
        assert time.time() < deadline, "the server did not recover"
        time.sleep(0.2)
    assert host.get("/api/keys").json()["keys"] == [dict(before[0], **{k: v for k, v in
                                                                     host.get("/api/keys").json()["keys"][0].items()
                                                                     if k in ("last_used", "requests_this_hour")})]
    assert "cannot write usage to the database" in host.log()


@pytest.mark.parametrize("url", ["postgresql://nobody:wrong@127.0.0.1:1/none", "sqlite:////proc/no/such/dir/auth.db"])
def test_database_unreachable_at_start_refuses_to_serve(make_host, url):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_DB": url})
    for path in ("/", "/api/system_stats", "/api/keys", "/api/auth/status", "/login"):
        response = host.get(path, allow_redirects=False)
        assert without_detail(response), path
    assert "refusing to serve" in host.log()
    assert "wrong" not in host.log()  # the password in the URL is not logged


@pytest.mark.parametrize("url", [
    "postgresql://nobody:Userinfo-Secret-1@127.0.0.1:1/none",
    "postgresql://nobody@127.0.0.1:1/none?password=Query-Secret-2",
    "postgresql://nobody:Userinfo-Secret-3@127.0.0.1:1/none?sslmode=disable&password=Query-Secret-4"
    "&sslpassword=Ssl-Secret-5",
])
def test_an_unreachable_database_leaves_no_password_or_host_in_bodies_or_the_log(make_host, url):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_DB": url})
    for method, path in (("GET", "/"), ("GET", "/api/system_stats"), ("GET", "/api/keys"), ("POST", "/api/keys"),
                         ("GET", "/api/auth/status"), ("POST", "/api/auth/login"), ("GET", "/ws")):
        response = requests.request(method, host.url(path), json={}, allow_redirects=False, timeout=10)
        assert without_detail(response), (method, path)
    log = host.log()
    assert "refusing to serve" in log and "cannot open database postgresql://nobody" in log
    assert "Secret" not in log, log
    assert "***" in log  # masked, not left out: the log still says which database


@pytest.mark.skipif(not ON_POSTGRES, reason="takes a PostgreSQL database away under the server")
def test_postgresql_going_away_while_serving_answers_503_without_detail(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_FLUSH_INTERVAL": str(FLUSH)})
    name = host.own_database.rsplit("/", 1)[1]
    key = host.create_key("user", rate_limit=1000)
    headers = {"X-API-Key": key["api_key"]}
    assert host.get("/api/features", headers=headers).status_code == 200
    _postgres(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
    _postgres(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    try:
        assert without_detail(host.post("/api/keys", json={"name": "during outage"}, timeout=30))
        deadline = time.time() + 30
        while host.get("/api/features", headers=headers).status_code != 503:  # the next flush fails
            assert time.time() < deadline, "writes failing never closed the server"
            time.sleep(0.2)
        assert without_detail(host.get("/api/features", headers=headers))
    finally:
        _postgres(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    deadline = time.time() + 30
    while host.get("/api/features", headers=headers).status_code != 200:
        assert time.time() < deadline, "the server did not recover"
        time.sleep(0.2)
    assert "not currently accepting connections" in host.log()  # the detail is in the log


def test_a_bad_setting_fails_closed_naming_the_variable(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "requir"})
    assert without_detail(host.get("/api/system_stats"))
    assert "bad setting COMFYUI_API_AUTH" in host.log()


@pytest.mark.parametrize("paths", ["/usage", "/api/usage", "/keys", "/auth/password", "/system_stats,/keys/abc",
                                   "/login"])
def test_a_public_path_over_one_of_the_package_routes_is_a_bad_setting(make_host, paths):
    host = make_host(env={"COMFYUI_API_AUTH_PUBLIC_PATHS": paths})
    for path in ("/api/usage", "/usage", "/api/system_stats", "/api/keys"):
        assert without_detail(host.get(path)), path  # was a 500 for GET /api/usage with "/usage"
    log = host.log()
    assert "bad setting COMFYUI_API_AUTH_PUBLIC_PATHS" in log and "one of this package's routes" in log
    assert log.count("refusing to serve") == 1


def test_a_public_path_opens_a_comfyui_route_under_both_spellings(make_host):
    for paths in ("/system_stats", "/api/system_stats"):
        host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_PUBLIC_PATHS": paths})
        assert host.get("/api/system_stats").status_code == 200, paths
        assert host.get("/system_stats").status_code == 200, paths
        assert host.get("/api/usage").json()["error_code"] == "KEY_REQUIRED"
        assert host.get("/api/queue").status_code == 401
        host.stop()


@pytest.mark.skipif(ON_POSTGRES, reason="writes a version into the SQLite file")
def test_a_newer_schema_stops_the_package_without_touching_data(make_host, tmp_path):
    host = make_host()
    host.create_key("kept")
    host.stop()
    path = host_db_file(host)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE api_auth_meta SET number = 99 WHERE name = 'schema_version'")
    host.start()
    assert without_detail(host.get("/api/keys"))
    assert "schema" in host.log()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM api_auth_keys").fetchone() == (1,)
        assert connection.execute("SELECT number FROM api_auth_meta WHERE name='schema_version'").fetchone() == (99,)
