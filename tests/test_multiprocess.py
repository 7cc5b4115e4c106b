"""Several ComfyUI processes sharing one database (SQLite file on one
machine, or PostgreSQL when TEST_DATABASE_URL is set): shared limits,
revocation reaching every process, usage adding up."""

import asyncio
import time

import aiohttp
import pytest

from conftest import ON_POSTGRES, drop_postgres_database, fresh_postgres_database

PROCESSES = 3


@pytest.fixture
def cluster(make_host, tmp_path):
    if ON_POSTGRES:
        url = fresh_postgres_database()
    else:
        url = f"sqlite:///{tmp_path / 'shared' / 'auth.db'}"
    env = {"COMFYUI_API_AUTH_DB": url,  # shared limits are on by default
           "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2", "COMFYUI_API_AUTH_REFRESH_INTERVAL": "1"}
    hosts = [make_host(env=env) for _ in range(PROCESSES)]
    yield hosts
    for host in hosts:
        host.stop()
    if ON_POSTGRES:
        drop_postgres_database(url)


def wait_until_known(hosts, api_key, timeout=5):
    """A key created on one process becomes usable on the others within the refresh interval."""
    deadline = time.time() + timeout
    for host in hosts:
        while host.get("/api/features", headers={"X-API-Key": api_key}).status_code == 401:
            assert time.time() < deadline, "the key never reached every process"
            time.sleep(0.1)


def burst(hosts, api_key, total):
    async def go():
        async with aiohttp.ClientSession() as client:
            async def one(index):
                host = hosts[index % len(hosts)]
                async with client.get(host.url("/api/features"), headers={"X-API-Key": api_key}) as response:
                    await response.read()
                    return response.status
            return await asyncio.gather(*(one(i) for i in range(total)))
    return asyncio.run(go())


@pytest.mark.parametrize("limit", [60, 500])
def test_a_burst_over_all_processes_admits_at_most_the_limit_and_nearly_all_of_it(cluster, limit):
    key = cluster[0].create_key("shared", rate_limit=limit)
    wait_until_known(cluster, key["api_key"])  # spends one request per process
    spent = PROCESSES
    statuses = burst(cluster, key["api_key"], limit * 2)
    admitted = statuses.count(200) + spent
    print(f"\nlimit {limit}: {admitted} admitted over {PROCESSES} processes "
          f"({admitted / limit:.1%}), {statuses.count(429)} refused")
    assert set(statuses) <= {200, 429}
    assert admitted <= limit
    assert admitted >= 0.95 * limit


def test_a_revoked_or_disabled_key_is_refused_by_every_process_within_5_seconds(cluster):
    for action in ("disable", "delete"):
        key = cluster[0].create_key(f"to {action}", rate_limit=10000)
        wait_until_known(cluster, key["api_key"])
        bearer = {"Authorization": f"Bearer {key['api_key']}"}
        for host in cluster:  # in use everywhere, so each process has verified the header already
            assert host.get("/api/features", headers=bearer).status_code == 200
        if action == "disable":
            cluster[1].patch(f"/api/keys/{key['key_id']}", json={"is_active": False})
        else:
            cluster[1].delete(f"/api/keys/{key['key_id']}")
        started = time.time()
        pending = set(range(PROCESSES))
        while pending and time.time() - started < 5:
            for index in list(pending):
                statuses = {cluster[index].get("/api/features", headers=headers).status_code
                            for headers in (bearer, {"X-API-Key": key["api_key"]})}
                if statuses == {401}:
                    pending.discard(index)
            time.sleep(0.05)
        print(f"\n{action}: refused everywhere after {time.time() - started:.2f} s")
        assert not pending


def test_usage_totals_add_up_exactly_across_processes(cluster):
    key = cluster[0].create_key("counted", rate_limit=100000)
    wait_until_known(cluster, key["api_key"])
    made = PROCESSES  # the requests wait_until_known made
    for _ in range(20):
        for host in cluster:
            assert host.get("/api/system_stats", headers={"X-API-Key": key["api_key"]}).status_code == 200
            made += 1
    time.sleep(1.0)  # every process flushes (0.2 s)
    for host in cluster:
        stats = host.get(f"/api/keys/{key['key_id']}").json()["usage_stats"]
        assert stats["total_requests"] == made
        endpoints = {e["route"]: e["requests"] for e in stats["endpoints"]}
        assert endpoints == {"/features": PROCESSES, "/system_stats": made - PROCESSES}


def test_sessions_work_on_every_process_and_sign_out_ends_them_everywhere(cluster):
    import requests
    response = requests.put(cluster[0].url("/api/auth/password"), json={"password": "a long admin password"})
    assert response.status_code == 200
    session = requests.Session()
    assert session.post(cluster[0].url("/api/auth/login"), json={"password": "a long admin password"}).status_code == 200
    token = session.cookies["comfyui_api_auth"]
    exposed_headers = {"X-Forwarded-For": "198.51.100.7"}  # not a trusted local request

    def every_process_answers(status):
        deadline = time.time() + 5
        for host in cluster:
            while requests.get(host.url("/api/keys"), cookies={"comfyui_api_auth": token},
                               headers=exposed_headers).status_code != status:
                assert time.time() < deadline
                time.sleep(0.1)

    every_process_answers(200)
    session.post(cluster[2].url("/api/auth/logout"))
    every_process_answers(401)


def test_an_expiry_and_a_rotation_set_on_one_process_hold_on_every_process_within_the_refresh_interval(cluster):
    key = cluster[0].create_key("lifecycle", rate_limit=10000)
    wait_until_known(cluster, key["api_key"])
    bearer = {"Authorization": f"Bearer {key['api_key']}"}
    for host in cluster:  # in use everywhere, so each process has verified the header already
        assert host.get("/api/features", headers=bearer).status_code == 200
    expires_at = time.time() + 2
    assert cluster[1].patch(f"/api/keys/{key['key_id']}", json={"expires_at": expires_at}).status_code == 200
    refresh = 1.0
    pending, seen = set(range(PROCESSES)), {}
    while pending and time.time() < expires_at + refresh + 2:  # + slack for a loaded machine
        for index in list(pending):
            response = cluster[index].get("/api/features", headers=bearer)
            seen[index] = (response.status_code, round(time.time() - expires_at, 2), response.text[:80])
            if response.status_code == 401:
                assert response.json()["error_code"] == "KEY_EXPIRED", seen
                assert time.time() >= expires_at, seen
                pending.discard(index)
        time.sleep(0.05)
    assert not pending, f"a process kept serving an expired key: {seen}"
    assert cluster[2].patch(f"/api/keys/{key['key_id']}", json={"expires_at": None}).status_code == 200
    rotated = cluster[2].post(f"/api/keys/{key['key_id']}/rotate", json={"grace_seconds": 0}).json()
    started = time.time()
    pending, seen = set(range(PROCESSES)), {}
    while pending and time.time() - started < refresh + 3:
        for index in list(pending):
            # the new secret first: once it works there, that process has the rotation (the last change)
            new = cluster[index].get("/api/features", headers={"Authorization": f"Bearer {rotated['api_key']}"})
            old = cluster[index].get("/api/features", headers=bearer)
            seen[index] = (old.status_code, old.text[:60], new.status_code)
            if old.status_code == 401 and new.status_code == 200:
                assert old.json()["error_code"] == "INVALID_KEY", seen
                pending.discard(index)
        time.sleep(0.05)
    print(f"\nrotation honoured everywhere after {time.time() - started:.2f} s")
    assert not pending, seen
