"""Browser sessions, login throttling, WebSocket auth, rate limits and usage
accounting, over real HTTP against the ComfyUI stand-in."""

import asyncio
import concurrent.futures
import time

import aiohttp
import pytest
import requests

from conftest import concurrent_gets, query_database

PASSWORD = "correct horse battery staple"
COOKIE = "comfyui_api_auth"


@pytest.fixture
def locked(make_host):
    """require mode, an admin password, no local trust (as on an exposed server)."""
    return make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
                          "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"})


def admin_session(host):
    session = requests.Session()
    response = session.post(host.url("/api/auth/login"), json={"password": PASSWORD})
    assert response.status_code == 200, response.text
    return session


# ---- browser navigation and sessions ------------------------------------------------------

def test_browser_navigation_is_redirected_to_login_before_comfyui_loads(locked):
    page = locked.get("/", headers={"Accept": "text/html,application/xhtml+xml"}, allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"] == "/login?next=/"
    assert locked.get("/login").status_code == 200 and b"Sign in" in locked.get("/login").content
    # API calls get JSON 401, never a redirect (no reload loop in the frontend)
    settings = locked.get("/api/settings", headers={"Accept": "application/json"}, allow_redirects=False)
    assert settings.status_code == 401 and settings.json()["error_code"] == "AUTH_REQUIRED"


def test_session_cookie_attributes_and_full_access_after_sign_in(locked):
    response = requests.post(locked.url("/api/auth/login"), json={"password": PASSWORD})
    assert response.status_code == 200 and response.json()["kind"] == "admin"
    set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP here; Secure is set under TLS
    token = response.cookies[COOKIE]
    assert len(token) >= 43  # 256 bits, base64url
    session = requests.Session()
    session.cookies.set(COOKIE, token)
    for path in ("/", "/api/settings", "/api/system_stats", "/internal/folder_paths", "/api/extensions",
                 "/api/keys", "/keys"):
        assert session.get(locked.url(path)).status_code == 200, path
    status = session.get(locked.url("/api/auth/status")).json()
    assert status["is_admin"] and status["principal"]["via"] == "session" and status["mode"] == "require"


def test_sign_out_ends_the_session_on_the_server(locked):
    session = admin_session(locked)
    token = session.cookies[COOKIE]
    assert session.post(locked.url("/api/auth/logout")).status_code == 200
    replay = requests.get(locked.url("/api/system_stats"), cookies={COOKIE: token})
    assert replay.status_code == 401


def test_sessions_are_stored_hashed_and_survive_a_restart(locked):
    session = admin_session(locked)
    token = session.cookies[COOKIE]
    rows = query_database(locked, "select token_hash from api_auth_sessions")
    assert rows and all(token not in row[0] for row in rows)
    locked.restart()
    assert requests.get(locked.url("/api/system_stats"), cookies={COOKIE: token}).status_code == 200


def test_unsafe_requests_with_a_session_must_come_from_the_same_origin(locked):
    session = admin_session(locked)
    foreign = session.post(locked.url("/api/keys"), json={"name": "csrf"},
                           headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and foreign.json()["error_code"] == "CROSS_ORIGIN"
    same = session.post(locked.url("/api/keys"), json={"name": "fine"},
                        headers={"Origin": f"http://127.0.0.1:{locked.port}"})
    assert same.status_code == 200
    cross_site = session.post(locked.url("/api/keys"), json={"name": "csrf2"},
                              headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    names = [k["name"] for k in session.get(locked.url("/api/keys")).json()["keys"]]
    assert names == ["fine"]


def test_a_key_session_is_a_key_holder_and_ends_when_the_key_is_disabled(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "browser", "rate_limit": 1000}).json()
    browser = requests.Session()
    login = browser.post(locked.url("/api/auth/login"), json={"api_key": key["api_key"]})
    assert login.status_code == 200 and login.json()["kind"] == "key"
    assert browser.get(locked.url("/api/system_stats")).status_code == 200
    assert browser.get(locked.url("/api/usage")).json()["key_id"] == key["key_id"]
    assert browser.get(locked.url("/api/keys")).status_code == 403
    admin.patch(locked.url(f"/api/keys/{key['key_id']}"), json={"is_active": False})
    assert browser.get(locked.url("/api/system_stats")).status_code == 401


def test_failed_logins_are_throttled_per_client_with_retry_after(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
                          "COMFYUI_API_AUTH_LOGIN_ATTEMPTS": "5"})
    statuses = [host.post("/api/auth/login", json={"password": f"wrong{i}"}).status_code for i in range(5)]
    assert statuses == [401] * 5
    blocked = host.post("/api/auth/login", json={"password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert blocked.json()["error_code"] == "TOO_MANY_ATTEMPTS"


@pytest.mark.parametrize("body, status", [
    ({}, 400), ({"password": "a", "api_key": "b"}, 400), ({"password": 5}, 400),
    ({"user": "admin"}, 400), ({"password": ""}, 400), ([], 400),
])
def test_login_validation(locked, body, status):
    response = locked.post("/api/auth/login", json=body)
    assert response.status_code == status and "error_code" in response.json()


# ---- WebSocket -----------------------------------------------------------------------------

async def _ws_handshake(url, **kwargs):
    async with aiohttp.ClientSession() as client:
        try:
            async with client.ws_connect(url, **kwargs) as socket:
                message = await socket.receive_json(timeout=5)
                return 101, message
        except aiohttp.WSServerHandshakeError as error:
            return error.status, None


def test_websocket_needs_a_principal_in_require_mode(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "ws", "rate_limit": 100}).json()
    base = f"ws://127.0.0.1:{locked.port}"
    assert asyncio.run(_ws_handshake(base + "/ws?clientId=x"))[0] == 401
    assert asyncio.run(_ws_handshake(base + "/api/ws?clientId=x"))[0] == 401
    assert asyncio.run(_ws_handshake(base + "/ws", headers={"X-API-Key": "comfy_" + "B" * 46}))[0] == 401
    status, message = asyncio.run(_ws_handshake(base + "/ws?clientId=x",
                                                headers={"Authorization": f"Bearer {key['api_key']}"}))
    assert status == 101 and message["type"] == "status"
    status, _ = asyncio.run(_ws_handshake(base + "/api/ws",
                                                headers={"Cookie": f"{COOKIE}={admin.cookies[COOKIE]}"}))
    assert status == 101


# ---- rate limits ---------------------------------------------------------------------------------

def test_burst_admits_exactly_the_limit_with_headers(host):
    key = host.create_key("burst", rate_limit=25)
    results = concurrent_gets(host.url("/api/system_stats"), {"X-API-Key": key["api_key"]}, 120)
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 25 and statuses.count(429) == 95
    for status, headers in results:
        assert headers["X-RateLimit-Limit"] == "25"
        reset = int(headers["X-RateLimit-Reset"])
        assert reset % 3600 == 0 and 0 < reset - time.time() <= 3600
        if status == 429:
            assert headers["X-RateLimit-Remaining"] == "0"
            assert 0 < int(headers["Retry-After"]) <= 3600
    refused = host.get("/api/system_stats", headers={"X-API-Key": key["api_key"]})
    assert refused.status_code == 429
    body = refused.json()
    assert body["error_code"] == "RATE_LIMIT_EXCEEDED" and body["limit"] == 25 and body["reset_in"] > 0
    remaining = sorted(int(h["X-RateLimit-Remaining"]) for s, h in results if s == 200)
    assert remaining == list(range(25))


def test_limit_zero_admits_nothing_and_changes_apply_at_once(host):
    key = host.create_key("zero", rate_limit=0)
    headers = {"X-API-Key": key["api_key"]}
    assert host.get("/api/system_stats", headers=headers).status_code == 429
    host.patch(f"/api/keys/{key['key_id']}", json={"rate_limit": 2})
    assert [host.get("/api/system_stats", headers=headers).status_code for _ in range(3)] == [200, 200, 429]


def test_counts_survive_a_restart(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"})
    key = host.create_key("persist", rate_limit=5)
    headers = {"Authorization": f"Bearer {key['api_key']}"}
    assert [host.get("/api/features", headers=headers).status_code for _ in range(3)] == [200] * 3
    host.restart()
    statuses = [host.get("/api/features", headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_refused_requests_do_not_spend_quota(host):
    key = host.create_key("quota", rate_limit=3)
    for _ in range(5):
        assert host.get("/api/system_stats", headers={"X-API-Key": "comfy_" + "C" * 46}).status_code == 401
    assert host.get("/api/usage", headers={"X-API-Key": key["api_key"]}).json()["requests_this_hour"] == 1


# ---- usage accounting ----------------------------------------------------------------------------

def test_usage_counts_match_requests_made(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"})
    key = host.create_key("counted", rate_limit=1000)
    headers = {"X-API-Key": key["api_key"]}
    made = {("GET", "/system_stats"): [0, 0], ("GET", "/queue"): [0, 0], ("POST", "/prompt"): [0, 0],
            ("GET", "/view"): [0, 0], ("GET", "/history/{prompt_id}"): [0, 0]}
    for _ in range(4):
        assert host.get("/api/system_stats", headers=headers).status_code == 200
        made[("GET", "/system_stats")][0] += 1
    for path in ("/queue", "/api/queue"):  # both twins count as one route
        assert host.get(path, headers=headers).status_code == 200
        made[("GET", "/queue")][0] += 1
    for _ in range(3):
        assert host.post("/api/prompt", json={"prompt": {}}, headers=headers).status_code == 400
        made[("POST", "/prompt")][1] += 1
    assert host.get("/view?filename=nothing.png&type=input", headers=headers).status_code == 404
    made[("GET", "/view")][1] += 1
    assert host.get("/api/history/abc", headers=headers).status_code == 200
    made[("GET", "/history/{prompt_id}")][0] += 1
    time.sleep(0.6)  # let a flush happen, so both paths (db + memory) are exercised

    stats = host.get(f"/api/keys/{key['key_id']}").json()["usage_stats"]
    total_ok = sum(ok for ok, _ in made.values())
    total_failed = sum(failed for _, failed in made.values())
    assert stats["successful_requests"] == total_ok and stats["failed_requests"] == total_failed
    assert stats["total_requests"] == total_ok + total_failed
    assert sum(stats["requests_per_day"].values()) == total_ok + total_failed
    seen = {(e["method"], e["route"]): [e["successful"], e["failed"]] for e in stats["endpoints"]}
    assert seen == made
    # the key's own view agrees, and includes the /usage call made before it
    own = host.get("/api/usage", headers=headers).json()["usage_stats"]
    assert own["total_requests"] == total_ok + total_failed
    again = host.get("/api/usage?days=1", headers=headers).json()["usage_stats"]
    assert again["total_requests"] == total_ok + total_failed + 1
    listed = host.get("/api/keys").json()["keys"][0]
    assert listed["last_used"] is not None and listed["requests_this_hour"] == total_ok + total_failed + 2

    host.restart()  # graceful: everything flushed
    after = host.get(f"/api/keys/{key['key_id']}").json()["usage_stats"]
    assert after["total_requests"] == total_ok + total_failed + 2


def test_usage_flushed_before_kill_9_is_kept(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"})
    key = host.create_key("crash", rate_limit=1000)
    for _ in range(10):
        host.get("/api/system_stats", headers={"X-API-Key": key["api_key"]})
    time.sleep(1.0)  # several flush intervals
    host.kill()
    host.start()
    stats = host.get(f"/api/keys/{key['key_id']}").json()["usage_stats"]
    assert stats["total_requests"] == 10


def test_event_loop_is_not_blocked_by_management_calls(host):
    """Creating keys (database writes) while a fast route is hammered: the
    fast route's worst latency stays small because writes run off the loop."""
    stop = time.time() + 2.0
    worst = 0.0

    def create_many():
        while time.time() < stop:
            host.create_key("churn")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        future = pool.submit(create_many)
        with requests.Session() as session:
            while time.time() < stop:
                started = time.perf_counter()
                session.get(host.url("/api/features"))
                worst = max(worst, time.perf_counter() - started)
        future.result()
    print(f"\nworst /api/features latency during key churn: {worst * 1000:.1f} ms")
    assert worst < 0.5
