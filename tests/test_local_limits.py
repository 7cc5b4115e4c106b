"""Hourly limits counted in the server process (COMFYUI_API_AUTH_SHARED_LIMITS=off).

The default (on) claims quota from the database in batches; with off the
in-process ``HourlyLimiter`` counts every request and the database only
receives its counts at each flush and seeds it at start. Over real HTTP on
the stand-in, then the limiter itself without a server.
"""

import signal
import time

import pytest

from conftest import concurrent_gets, package_module, query_database

ratelimit = package_module("core.ratelimit")

LOCAL = {"COMFYUI_API_AUTH_SHARED_LIMITS": "off"}


def clear_of_the_hour(seconds=10):
    """Wait out the end of the hour: a request on each side of it counts in two windows."""
    left = 3600 - time.time() % 3600
    if left < seconds:
        time.sleep(left + 0.5)


def persisted_count(host, key_id):
    """The key's count in the database for every hour it has one: {window: used}."""
    return dict(query_database(host, "SELECT w.window, w.used FROM api_auth_rate_windows w "
                                     f"JOIN api_auth_keys k ON k.id = w.key_pk WHERE k.key_id = '{key_id}'"))


# ---- over HTTP ------------------------------------------------------------------------------------

def test_a_burst_admits_exactly_the_limit_counted_in_the_process(make_host):
    host = make_host(env={**LOCAL, "COMFYUI_API_AUTH_FLUSH_INTERVAL": "60"})
    key = host.create_key("local burst", rate_limit=30)
    clear_of_the_hour()
    results = concurrent_gets(host.url("/api/features"), {"Authorization": f"Bearer {key['api_key']}"}, 150)
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 30 and statuses.count(429) == 120
    reset = (int(time.time()) // 3600 + 1) * 3600
    for status, headers in results:
        assert headers["X-RateLimit-Limit"] == "30" and headers["X-RateLimit-Reset"] == str(reset)
        if status == 429:
            assert headers["X-RateLimit-Remaining"] == "0"
            assert abs(int(headers["Retry-After"]) - (reset - time.time())) <= 5
    assert sorted(int(h["X-RateLimit-Remaining"]) for s, h in results if s == 200) == list(range(30))
    # Counted in memory alone: no quota was claimed from the database (the
    # default would have claimed a batch before the first request), and the
    # flush is a minute away.
    assert persisted_count(host, key["key_id"]) == {}


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL after a flush"])
def test_the_count_survives_a_restart(make_host, how):
    host = make_host(env={**LOCAL, "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"})
    key = host.create_key("local restart", rate_limit=5)
    headers = {"Authorization": f"Bearer {key['api_key']}"}
    clear_of_the_hour()
    assert [host.get("/api/features", headers=headers).status_code for _ in range(3)] == [200] * 3
    if how == "SIGTERM":
        host.stop(signal.SIGTERM)  # the last flush writes what is counted
    else:
        time.sleep(1.0)  # several flushes
        host.kill()
    assert list(persisted_count(host, key["key_id"]).values()) == [3]
    host.start()  # the limiter is seeded from the database
    answers = [host.get("/api/features", headers=headers) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers] == ["1", "0", "0"]


def test_a_lowered_limit_applies_at_once_and_a_raised_one_too(make_host):
    host = make_host(env=LOCAL)
    key = host.create_key("local change", rate_limit=10)
    headers = {"Authorization": f"Bearer {key['api_key']}"}
    clear_of_the_hour()
    assert [host.get("/api/features", headers=headers).status_code for _ in range(4)] == [200] * 4
    assert host.patch(f"/api/keys/{key['key_id']}", json={"rate_limit": 3}).status_code == 200
    refused = host.get("/api/features", headers=headers)
    assert refused.status_code == 429 and refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.json()["limit"] == 3
    assert host.patch(f"/api/keys/{key['key_id']}", json={"rate_limit": 6}).status_code == 200
    answers = [host.get("/api/features", headers=headers) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers[:2]] == ["1", "0"]


# ---- the limiter itself (see also test_core_rules.py) -------------------------------------------

HOUR = 3600 * 500_000


def test_a_rolled_window_keeps_the_past_hour_count_for_the_next_drain():
    limiter = ratelimit.HourlyLimiter()
    assert [limiter.take(1, 10, HOUR) for _ in range(3)] == [9, 8, 7]
    assert limiter.take(1, 10, HOUR + 3600) == 9  # a new hour starts from zero
    assert limiter.drain() == {(1, HOUR): 3, (1, HOUR + 3600): 1}
    assert limiter.drain() == {}


def test_seed_adopts_what_the_database_holds_without_counting_twice():
    limiter = ratelimit.HourlyLimiter()
    limiter.take(1, 10, HOUR)
    limiter.take(1, 10, HOUR)
    assert limiter.drain() == {(1, HOUR): 2}        # persisted: 2
    limiter.take(1, 10, HOUR)                       # one more, not yet persisted
    limiter.seed(1, HOUR, 5)                        # the database holds 5 (3 from another writer)
    assert limiter.used(1, HOUR) == 6
    assert limiter.drain() == {(1, HOUR): 1}        # only ours goes to the database
    limiter.seed(1, HOUR, 4)                        # an older, smaller figure changes nothing
    limiter.seed(1, HOUR - 3600, 50)                # nor does a past hour
    assert limiter.used(1, HOUR) == 6
    assert [limiter.take(1, 8, HOUR) for _ in range(3)] == [1, 0, ratelimit.REFUSED]
    assert limiter.drain() == {(1, HOUR): 2}
    limiter.seed(1, HOUR + 3600, 7)                 # a later hour replaces the count
    assert limiter.take(1, 8, HOUR + 3600) == 0
    assert limiter.drain() == {(1, HOUR + 3600): 1}


def test_restored_counts_are_drained_again_with_the_new_ones():
    limiter = ratelimit.HourlyLimiter()
    for _ in range(4):
        limiter.take(1, 100, HOUR)
    limiter.take(2, 100, HOUR)
    failed = limiter.drain()                        # the write of this batch fails
    limiter.take(1, 100, HOUR)
    limiter.restore(failed)
    assert limiter.drain() == {(1, HOUR): 5, (2, HOUR): 1}
    assert limiter.used(1, HOUR) == 5               # restoring does not spend quota twice
    limiter.restore({(1, HOUR - 3600): 2})
    assert limiter.drain() == {(1, HOUR - 3600): 2}


def test_forget_drops_a_deleted_key_and_refund_gives_back_one_in_the_same_hour():
    limiter = ratelimit.HourlyLimiter()
    assert [limiter.take(1, 2, HOUR) for _ in range(3)] == [1, 0, ratelimit.REFUSED]
    limiter.take(2, 2, HOUR)
    limiter.forget(1)
    assert limiter.used(1, HOUR) == 0 and limiter.drain() == {(2, HOUR): 1}
    limiter.refund(2, HOUR + 10)
    assert limiter.used(2, HOUR) == 0
    limiter.refund(2, HOUR + 10)                    # never below zero
    assert limiter.used(2, HOUR) == 0
    limiter.take(2, 2, HOUR)
    limiter.refund(2, HOUR + 3600)                  # another hour: nothing to give back
    assert limiter.used(2, HOUR) == 1
