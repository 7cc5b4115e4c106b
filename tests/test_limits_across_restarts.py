"""Hourly limits across restarts and processes, over real HTTP with real
processes: a plain restart (SIGTERM as systemd and docker send it, or Ctrl-C)
costs a key nothing, and ``requests_this_hour`` in /api/keys, /api/keys/{id}
and /api/usage is the hour's total across restarts and processes, agreeing
with X-RateLimit-Remaining. The stand-in handles signals exactly as ComfyUI
does (SIGTERM kills, Ctrl-C skips on_shutdown); ``--graceful-signals`` makes
it stop cleanly, as an embedding with its own handler might."""

import signal
import threading
import time

import pytest
import requests

from conftest import ON_POSTGRES, drop_postgres_database, fresh_postgres_database

LIMIT = 40
BATCH = LIMIT // 8  # the largest batch a process claims for one waiting request (an eighth of what is left)

# how the process is stopped -> (stand-in flags, signal, exit status, a line its log must show)
STOPS = {
    "comfyui-sigterm": ([], signal.SIGTERM, -signal.SIGTERM, None),
    "comfyui-ctrl-c": ([], signal.SIGINT, 0, "Stopped server"),
    "graceful-sigterm": (["--graceful-signals"], signal.SIGTERM, 0, "Received SIGTERM, shutting down"),
}


def admin_counts(host, key_id):
    """requests_this_hour as the panel sees it: (GET /api/keys, GET /api/keys/{id})."""
    listed = {k["key_id"]: k["requests_this_hour"] for k in host.get("/api/keys").json()["keys"]}
    return listed[key_id], host.get(f"/api/keys/{key_id}").json()["requests_this_hour"]


def own_view(host, api_key):
    """GET /api/usage, itself a request charged to the key: (requests_this_hour, X-RateLimit-Remaining)."""
    response = host.get("/api/usage", headers={"X-API-Key": api_key})
    assert response.status_code == 200, response.text
    return response.json()["requests_this_hour"], int(response.headers["X-RateLimit-Remaining"])


def spend_until_refused(host, api_key, spent, check_header=True):
    """Requests until a 429, from ``spent`` requests made this hour: the new total.
    ``check_header``: each 200's X-RateLimit-Remaining must be exactly what is left."""
    while spent <= LIMIT:
        response = host.get("/api/features", headers={"Authorization": f"Bearer {api_key}"})
        if response.status_code == 429:
            return spent
        assert response.status_code == 200, response.text
        spent += 1
        assert not check_header or int(response.headers["X-RateLimit-Remaining"]) == LIMIT - spent
    return spent


# Not here: "off" with Ctrl-C or a graceful stop, where atexit / on_shutdown always flushed the counts.
@pytest.mark.parametrize("stop, shared", [("comfyui-sigterm", "on"), ("comfyui-sigterm", "off"),
                                          ("comfyui-ctrl-c", "on"), ("graceful-sigterm", "on")])
def test_a_restart_costs_a_key_nothing_and_every_count_stays_true(make_host, stop, shared):
    flags, sig, exit_status, log_line = STOPS[stop]
    # The default flush interval (2 s): the stop comes before any periodic flush.
    host = make_host(env={"COMFYUI_API_AUTH_SHARED_LIMITS": shared}, extra_args=flags)
    key = host.create_key("restarted", rate_limit=LIMIT)
    first = host.get("/api/features", headers={"Authorization": f"Bearer {key['api_key']}"})
    assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == str(LIMIT - 1)

    host.stop(sig)
    # The process ended as it would have without the package (the signal was handed on).
    assert host.process.returncode == exit_status, host.log()
    assert log_line is None or log_line in host.log()
    host.start()

    assert admin_counts(host, key["key_id"]) == (1, 1)
    assert own_view(host, key["api_key"]) == (2, LIMIT - 2)
    assert spend_until_refused(host, key["api_key"], 2) == LIMIT  # 39 after the restart, the 41st refused
    assert admin_counts(host, key["key_id"]) == (LIMIT, LIMIT)
    assert host.get("/api/usage", headers={"X-API-Key": key["api_key"]}).status_code == 429


@pytest.mark.parametrize("shared", ["on", "off"])
def test_a_sigterm_under_load_charges_exactly_the_requests_served(make_host, shared):
    host = make_host(env={"COMFYUI_API_AUTH_SHARED_LIMITS": shared})
    key = host.create_key("busy", rate_limit=100000)
    served, workers = [], 8

    def work():
        with requests.Session() as session:
            while True:
                try:
                    response = session.get(host.url("/api/features"), headers={"X-API-Key": key["api_key"]}, timeout=5)
                except requests.RequestException:
                    return  # the server is gone
                assert response.status_code == 200
                served.append(1)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    host.stop(signal.SIGTERM)
    for thread in threads:
        thread.join()
    host.start()
    charged = admin_counts(host, key["key_id"])[0]
    # Unspent quota given back (shared) and every count flushed (off): what was
    # charged is what was served, plus at most the requests in flight at the signal.
    print(f"\n{len(served)} served, {charged} charged after SIGTERM")
    assert len(served) > 100
    assert len(served) <= charged <= len(served) + workers


@pytest.fixture(params=["on", "off"])
def pair(request, make_host, tmp_path):
    """Two processes sharing one database, stopped the way ComfyUI is."""
    url = fresh_postgres_database() if ON_POSTGRES else f"sqlite:///{tmp_path / 'shared' / 'auth.db'}"
    env = {"COMFYUI_API_AUTH_DB": url, "COMFYUI_API_AUTH_SHARED_LIMITS": request.param,
           "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2", "COMFYUI_API_AUTH_REFRESH_INTERVAL": "0.5"}
    hosts = [make_host(env=env) for _ in range(2)]
    yield request.param, hosts
    for host in hosts:
        host.stop()
    if ON_POSTGRES:
        drop_postgres_database(url)


def test_each_process_reports_the_total_across_processes_and_a_sigterm_gives_quota_back(pair):
    shared, (one, two) = pair
    key = one.create_key("shared", rate_limit=LIMIT)
    bearer = {"Authorization": f"Bearer {key['api_key']}"}
    deadline = time.time() + 5
    while two.get("/api/features", headers=bearer).status_code == 401:  # until two has learnt the key
        assert time.time() < deadline
        time.sleep(0.1)
    made = 1
    for host, count in ((one, 3), (two, 2)):
        for _ in range(count):
            assert host.get("/api/features", headers=bearer).status_code == 200
            made += 1
    if shared == "off":
        time.sleep(1.0)  # counted per process: each has flushed what the other reads

    # Shared limits: what the other process claimed and has not spent counts as
    # used (at most one batch); otherwise exactly the total.
    slack = BATCH if shared == "on" else 0
    for host in (one, two):
        for reported in admin_counts(host, key["key_id"]):
            assert made <= reported <= made + slack, (host.port, reported, made)
    for host in (one, two):
        # Off: the other process's last request flushed. On: this process has
        # read the hour's claimed total since the other's last claim.
        time.sleep(1.0)
        used, remaining = own_view(host, key["api_key"])
        made += 1
        assert made <= used <= made + slack
        if shared == "on":  # the header counts the other's unspent claim as used too
            assert remaining == LIMIT - used

    two.stop(signal.SIGTERM)  # gives its unspent quota back, flushes its counts
    assert two.process.returncode == -signal.SIGTERM
    assert admin_counts(one, key["key_id"]) == (made, made)
    if shared == "on":  # one process spends what is left, the other's given-back quota included
        # (its header, from before the other gave quota back, may say less)
        assert spend_until_refused(one, key["api_key"], made, check_header=False) == LIMIT
        assert admin_counts(one, key["key_id"]) == (LIMIT, LIMIT)


@pytest.mark.parametrize("pair", ["on"], indirect=True)
def test_quota_one_process_gives_back_is_spent_by_the_other(pair):
    _, (one, two) = pair
    key = one.create_key("handed over", rate_limit=LIMIT)
    bearer = {"Authorization": f"Bearer {key['api_key']}"}
    deadline = time.time() + 5
    while two.get("/api/features", headers=bearer).status_code == 401:  # two claims a batch, spends 1
        assert time.time() < deadline
        time.sleep(0.1)
    spent = spend_until_refused(one, key["api_key"], 1, check_header=False)  # one claims the rest of the hour
    assert spent < LIMIT  # two still holds the rest of its batch
    two.stop(signal.SIGTERM)
    time.sleep(1.0)  # one reads the hour's claimed total again (REFRESH_INTERVAL 0.5 s)
    assert spend_until_refused(one, key["api_key"], spent) == LIMIT
    assert admin_counts(one, key["key_id"]) == (LIMIT, LIMIT)
