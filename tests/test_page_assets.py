"""The ComfyUI page and its files are not API requests: over real HTTP on the
ComfyUI stand-in in require mode, a key's requests for the page, its static
files, extension web files and the sign-in page need the key but are not
charged to its hourly limit nor counted as its requests; they show apart as
page loads. A miss (no route, no file) is charged, so misses are not free."""

import os

import pytest
import requests

from conftest import REPO, requests_this_hour

PASSWORD = "correct horse battery staple"
COOKIE = "comfyui_api_auth"
FOLDER = os.path.basename(REPO)  # the name ComfyUI serves the package's web/ under

PAGES = ["/", "/api/", "/login"]  # ComfyUI's index (and its /api twin), the sign-in page
FILES = ["/scripts/app.js", "/scripts/api.js", "/index.html",   # ComfyUI's web root
         f"/extensions/{FOLDER}/api-keys.js", f"/extensions/{FOLDER}/api-keys.css"]  # EXTENSION_WEB_DIRS


@pytest.fixture
def locked(make_host):
    return make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
                          "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"})


def admin_session(host):
    session = requests.Session()
    assert session.post(host.url("/api/auth/login"), json={"password": PASSWORD}, timeout=10).status_code == 200
    return session


def credentials(host, key):
    """The three ways a key is presented: Bearer, X-API-Key, a browser session opened with it."""
    bearer, header, browser = requests.Session(), requests.Session(), requests.Session()
    bearer.headers["Authorization"] = "Bearer " + key["api_key"]
    header.headers["X-API-Key"] = key["api_key"]
    assert browser.post(host.url("/api/auth/login"), json={"api_key": key["api_key"]}, timeout=10).status_code == 200
    return {"bearer": bearer, "x-api-key": header, "session": browser}


def test_page_files_need_a_principal_but_are_not_charged(locked):
    for path in FILES:
        assert requests.get(locked.url(path), timeout=10).status_code == 401, path
    index = requests.get(locked.url("/"), headers={"Accept": "text/html"}, allow_redirects=False, timeout=10)
    assert index.status_code == 302 and index.headers["Location"] == "/login?next=/"

    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "laptop", "rate_limit": 3}, timeout=10).json()
    ways = credentials(locked, key)
    before = requests_this_hour(admin, locked, key)  # 0, or 1 where a key sign-in is charged
    assert before in (0, 1)
    for name, session in ways.items():
        for path in PAGES + FILES:
            for _ in range(4):  # 3 ways x 8 paths x 4 = 96 page requests on a limit of 3
                response = session.get(locked.url(path), timeout=10)
                assert response.status_code == 200, (name, path, response.status_code)
                assert "X-RateLimit-Remaining" not in response.headers, (name, path)
            assert session.head(locked.url(path), timeout=10).status_code == 200, (name, path)
    assert requests_this_hour(admin, locked, key) == before
    # the limit is untouched: API calls still get exactly what is left of it
    api = [ways["bearer"].get(locked.url("/api/system_stats"), timeout=10).status_code for _ in range(4)]
    assert api == [200] * (3 - before) + [429] * (1 + before)


def test_a_miss_is_charged_and_refused_once_the_limit_is_spent(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "prober", "rate_limit": 4}, timeout=10).json()
    ways = credentials(locked, key)
    before = requests_this_hour(admin, locked, key)
    bearer, browser = ways["bearer"], ways["session"]

    miss = bearer.get(locked.url("/no-such-file.js"), timeout=10)  # the web root's static fallback
    assert miss.status_code == 404 and miss.headers["X-RateLimit-Remaining"] == str(3 - before)
    miss = browser.get(locked.url(f"/extensions/{FOLDER}/no-such-file.js"), timeout=10)
    assert miss.status_code == 404 and miss.headers["X-RateLimit-Remaining"] == str(2 - before)
    assert ways["x-api-key"].post(locked.url("/no/such/route"), timeout=10).status_code == 405  # no route at all
    assert requests_this_hour(admin, locked, key) == before + 3
    while requests_this_hour(admin, locked, key) < 4:
        assert bearer.get(locked.url("/api/system_stats"), timeout=10).status_code == 200

    # spent: misses and API calls are refused, the page's files still load
    for session in (bearer, browser):
        refused = session.get(locked.url("/no-such-file.js"), timeout=10)
        assert refused.status_code == 429 and refused.json()["error_code"] == "RATE_LIMIT_EXCEEDED"
        assert session.get(locked.url("/api/object_info"), timeout=10).status_code == 429
        for path in PAGES + FILES:
            assert session.get(locked.url(path), timeout=10).status_code == 200, path
    assert requests_this_hour(admin, locked, key) == 4


def test_usage_shows_page_loads_apart_from_requests(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "viewer", "rate_limit": 100}, timeout=10).json()
    bearer = requests.Session()
    bearer.headers["Authorization"] = "Bearer " + key["api_key"]
    for path in ["/", "/", "/login"]:
        assert bearer.get(locked.url(path), timeout=10).status_code == 200
    for path in FILES:
        assert bearer.get(locked.url(path), timeout=10).status_code == 200
    assert bearer.get(locked.url("/no-such-file.js"), timeout=10).status_code == 404
    assert bearer.get(locked.url("/api/system_stats"), timeout=10).status_code == 200
    assert bearer.get(locked.url("/api/system_stats"), timeout=10).status_code == 200

    def check(stats, api=(("GET", "/system_stats", 2, 0), ("GET", "(static)", 0, 1))):
        total = sum(e[2] + e[3] for e in api)
        assert stats["total_requests"] == total and stats["failed_requests"] == 1
        assert sum(stats["requests_per_day"].values()) == total
        assert {(e["method"], e["route"], e["successful"], e["failed"]) for e in stats["endpoints"]} == set(api)
        assert stats["page_loads"] == 3 and stats["page_files"] == len(FILES)

    body = admin.get(locked.url(f"/api/keys/{key['key_id']}"), timeout=10).json()
    assert body["requests_this_hour"] == 3
    check(body["usage_stats"])
    own = bearer.get(locked.url("/api/usage"), timeout=10).json()  # the key's own view: the fourth request
    assert own["requests_this_hour"] == 4
    check(own["usage_stats"])
    locked.restart()  # written to the database and read back
    admin = admin_session(locked)
    check(admin.get(locked.url(f"/api/keys/{key['key_id']}"), timeout=10).json()["usage_stats"],
          (("GET", "/system_stats", 2, 0), ("GET", "(static)", 0, 1), ("GET", "/usage", 1, 0)))
