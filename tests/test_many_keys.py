"""Two servers sharing a database that holds 20,000 keys: the keys are loaded
packed and built on first use (service/keycache.py); keys among them still
get in, and changes to them still reach both processes."""

import hashlib
import secrets
import time

import pytest

from conftest import ON_POSTGRES, drop_postgres_database, fresh_postgres_database

FILLER = 20_000
COLUMNS = ("key_id", "key_hash", "prefix", "name", "rate_limit", "is_active", "metadata", "scopes",
           "created_at", "updated_at", "revision")


def insert_keys(url, rows):
    """Rows straight into the keys table, as a bulk import (or a restore) would put them."""
    statement = (f"INSERT INTO api_auth_keys ({', '.join(COLUMNS)}) VALUES "
                 f"({', '.join(['%s' if ON_POSTGRES else '?'] * len(COLUMNS))})")
    if ON_POSTGRES:
        import psycopg2
        connection = psycopg2.connect(url)
    else:
        import sqlite3
        connection = sqlite3.connect(url[len("sqlite:///"):])
    try:
        with connection:
            connection.cursor().executemany(statement, rows)
    finally:
        connection.close()


def key_row(name, scopes="generate", secret=None):
    secret = secret or "comfy_" + secrets.token_urlsafe(32)
    now = time.time()
    row = (secrets.token_hex(8), hashlib.sha256(secret.encode()).hexdigest(), secret[:10], name, 100000,
           True, '{"imported": true}', scopes, now, now, 0)
    return row, secret


@pytest.fixture
def pair(make_host, tmp_path):
    """(two servers on one database of 20,000 keys, the known keys: name -> (key id, secret))."""
    url = fresh_postgres_database() if ON_POSTGRES else f"sqlite:///{tmp_path / 'shared' / 'auth.db'}"
    env = {"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_DB": url, "COMFYUI_API_AUTH_REFRESH_INTERVAL": "0.2"}
    first = make_host(env=env)  # creates the schema
    known, rows = {}, []
    for name, scopes in (("admin", "admin"), ("to disable", "generate"), ("to delete", "generate")):
        row, secret = key_row(name, scopes)
        known[name] = (row[0], secret)
        rows.append(row)
    rows[1:1] = [key_row(f"filler-{i}")[0] for i in range(FILLER // 2)]  # the known ones among them
    rows += [key_row(f"filler-{i}")[0] for i in range(FILLER // 2, FILLER)]
    insert_keys(url, rows)
    first.restart()
    second = make_host(env=env)
    yield (first, second), known
    for host in (first, second):
        host.stop()  # before the database goes
    if ON_POSTGRES:
        drop_postgres_database(url)


def status(host, secret):
    return host.get("/api/features", headers={"Authorization": f"Bearer {secret}"}).status_code


def until(predicate, timeout=5):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "not within the refresh interval"
        time.sleep(0.05)


def test_keys_among_20000_get_in_and_their_changes_reach_every_process(pair):
    (first, second), known = pair
    admin = {"Authorization": f"Bearer {known['admin'][1]}"}
    assert "20003 keys" in first.log()  # loaded at start
    for host in (first, second):
        for name in known:
            assert status(host, known[name][1]) == 200, name
        assert status(host, "comfy_" + secrets.token_urlsafe(32)) == 401
        assert host.get("/api/keys?limit=1", headers=admin).status_code == 200  # the admin set from the load

    created = first.post("/api/keys", json={"name": "new among many"}, headers=admin)
    assert created.status_code == 200, created.text
    assert status(first, created.json()["api_key"]) == 200
    until(lambda: status(second, created.json()["api_key"]) == 200)

    key_id, secret = known["to disable"]
    assert first.patch(f"/api/keys/{key_id}", json={"is_active": False}, headers=admin).status_code == 200
    assert status(first, secret) == 401
    until(lambda: status(second, secret) == 401)

    key_id, secret = known["to delete"]
    assert second.delete(f"/api/keys/{key_id}", headers=admin).status_code in (200, 204)
    assert status(second, secret) == 401
    until(lambda: status(first, secret) == 401)
    assert status(first, known["admin"][1]) == 200 and status(second, known["admin"][1]) == 200
