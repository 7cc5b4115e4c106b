"""WebSockets and access that ends: a key revoked or disabled, a session
signed out or run out, on this process or another sharing the database,
closes the sockets opened with it (after a message saying why); reconnects
get 401 and are not charged. A handshake carrying a session cookie must
come from the page's own origin. All over real HTTP/WebSocket on loopback."""

import asyncio
import hashlib
import sqlite3
import time

import aiohttp
import pytest
import requests

from conftest import ON_POSTGRES, drop_postgres_database, fresh_postgres_database, host_db_file, query_database

PASSWORD = "correct horse battery staple"
COOKIE = "comfyui_api_auth"
REFRESH = 0.5
FAST = {"COMFYUI_API_AUTH_REFRESH_INTERVAL": str(REFRESH), "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"}


@pytest.fixture
def locked(make_host):
    """require mode, an admin password, no local trust (as on an exposed server)."""
    return make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD, **FAST})


def admin_session(host):
    session = requests.Session()
    assert session.post(host.url("/api/auth/login"), json={"password": PASSWORD}).status_code == 200
    return session


def key_session(host, api_key):
    session = requests.Session()
    assert session.post(host.url("/api/auth/login"), json={"api_key": api_key}).status_code == 200
    return session


def cookie_header(session):
    return {"Cookie": f"{COOKIE}={session.cookies[COOKIE]}"}


def ws_url(host, path="/ws"):
    return f"ws://127.0.0.1:{host.port}{path}"


async def open_socket(client, host, headers, path="/ws"):
    socket = await client.ws_connect(ws_url(host, path), headers=headers)
    first = await socket.receive_json(timeout=5)
    assert first["type"] == "status"
    return socket


async def until_closed(socket, timeout):
    """(the JSON messages received, the code of the server's close frame) once the
    server closes the socket; None for a connection dropped without a close frame."""
    messages = []
    deadline = time.monotonic() + timeout
    while True:
        message = await socket.receive(timeout=max(0.01, deadline - time.monotonic()))
        if message.type == aiohttp.WSMsgType.TEXT:
            messages.append(message.json())
        elif message.type == aiohttp.WSMsgType.CLOSE:
            return messages, message.data
        elif message.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return messages, None


async def still_open(socket):
    """The server still serves the socket: it answers the first client message (feature flags)."""
    await socket.send_json({"type": "feature_flags", "data": {}})
    while True:
        message = await socket.receive(timeout=5)
        if message.type != aiohttp.WSMsgType.TEXT:
            return False
        if message.json()["type"] == "feature_flags":
            return True


async def in_thread(function, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: function(*args, **kwargs))


async def handshake_status(host, headers, path="/ws"):
    async with aiohttp.ClientSession() as client:
        try:
            async with client.ws_connect(ws_url(host, path), headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as error:
            return error.status


def revoked(messages, reason):
    """The socket was told why before it was closed (and that was the last word)."""
    return messages and messages[-1] == {"type": "api_auth_revoked", "data": {"reason": reason, "login_url": "/login"}}


def usage_rows(host, key_id):
    """Requests counted for a key in the database (successful, failed), after a flush."""
    time.sleep(0.6)
    rows = query_database(host, "SELECT COALESCE(SUM(u.successful), 0), COALESCE(SUM(u.failed), 0) "
                                "FROM api_auth_usage_hourly u JOIN api_auth_keys k ON k.id = u.key_pk "
                                f"WHERE k.key_id = '{key_id}'")
    return tuple(int(value) for value in rows[0])


# ---- revocation closes the sockets opened with what was revoked ---------------------------------

def test_deleting_a_key_closes_its_sockets_and_only_those(locked):
    admin = admin_session(locked)
    doomed = admin.post(locked.url("/api/keys"), json={"name": "doomed", "rate_limit": 1000}).json()
    other = admin.post(locked.url("/api/keys"), json={"name": "other", "rate_limit": 1000}).json()

    async def go():
        async with aiohttp.ClientSession() as client:
            by_header = await open_socket(client, locked, {"Authorization": f"Bearer {doomed['api_key']}"})
            by_x_api_key = await open_socket(client, locked, {"X-API-Key": doomed["api_key"]}, "/api/ws")
            by_session = await open_socket(client, locked, cookie_header(key_session(locked, doomed["api_key"])))
            others = [await open_socket(client, locked, {"Authorization": f"Bearer {other['api_key']}"}),
                      await open_socket(client, locked, cookie_header(admin))]
            started = time.monotonic()
            assert (await in_thread(admin.delete, locked.url(f"/api/keys/{doomed['key_id']}"))).status_code == 200
            for socket in (by_header, by_x_api_key, by_session):
                messages, code = await until_closed(socket, timeout=5)
                assert revoked(messages, "key_revoked"), messages
                assert code == 4401
            elapsed = time.monotonic() - started
            await asyncio.sleep(2 * REFRESH)  # a refresh tick's sweep leaves the others open too
            for socket in others:
                assert await still_open(socket)
            return elapsed

    elapsed = asyncio.run(go())
    print(f"\nsockets of a deleted key closed {elapsed * 1000:.0f} ms after the DELETE")
    assert elapsed < REFRESH  # at once on the process that deleted it, not at the next tick
    before = usage_rows(locked, doomed["key_id"])
    for _ in range(3):  # a client's reconnects: refused, and not charged
        assert asyncio.run(handshake_status(locked, {"Authorization": f"Bearer {doomed['api_key']}"})) == 401
    assert usage_rows(locked, doomed["key_id"]) == before


def test_disabling_a_key_closes_its_socket_and_reconnects_are_refused_uncharged(locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "paused", "rate_limit": 1000}).json()
    bearer = {"Authorization": f"Bearer {key['api_key']}"}

    async def go():
        async with aiohttp.ClientSession() as client:
            socket = await open_socket(client, locked, bearer)
            await in_thread(admin.patch, locked.url(f"/api/keys/{key['key_id']}"), json={"name": "renamed"})
            assert await still_open(socket), "a change that keeps the key usable keeps its socket"
            response = await in_thread(admin.patch, locked.url(f"/api/keys/{key['key_id']}"), json={"is_active": False})
            assert response.status_code == 200
            return await until_closed(socket, timeout=5)

    messages, code = asyncio.run(go())
    assert revoked(messages, "key_disabled") and code == 4401, (messages, code)
    counted = admin.get(locked.url(f"/api/keys/{key['key_id']}")).json()
    for _ in range(3):
        assert asyncio.run(handshake_status(locked, bearer)) == 401
    again = admin.get(locked.url(f"/api/keys/{key['key_id']}")).json()
    assert again["usage_stats"]["total_requests"] == counted["usage_stats"]["total_requests"]
    assert again["requests_this_hour"] == counted["requests_this_hour"]


def test_signing_out_closes_the_sessions_sockets_only(locked):
    leaving, staying = admin_session(locked), admin_session(locked)
    cookie = cookie_header(leaving)

    async def go():
        async with aiohttp.ClientSession() as client:
            socket = await open_socket(client, locked, cookie)
            other = await open_socket(client, locked, cookie_header(staying))
            assert (await in_thread(leaving.post, locked.url("/api/auth/logout"))).status_code == 200
            result = await until_closed(socket, timeout=5)
            assert await still_open(other)
            return result

    messages, code = asyncio.run(go())
    assert revoked(messages, "signed_out") and code == 4401, (messages, code)
    assert asyncio.run(handshake_status(locked, cookie)) == 401  # the page's reconnect


def _bring_expiry_forward(host, token, expires_at):
    """Shorten a session in the database, as a lower COMFYUI_API_AUTH_SESSION_TTL would
    have made it, with a new revision so the running server picks it up (as it picks
    up any other process's change)."""
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    statements = ["UPDATE api_auth_meta SET number = number + 1 WHERE name = 'revision'",
                  f"UPDATE api_auth_sessions SET expires_at = {expires_at}, revision = "
                  f"(SELECT number FROM api_auth_meta WHERE name = 'revision') WHERE token_hash = '{token_hash}'"]
    if ON_POSTGRES:
        import psycopg2
        connection = psycopg2.connect(host.own_database)
        with connection, connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        connection.close()
    else:
        with sqlite3.connect(host_db_file(host), timeout=10) as connection:
            for statement in statements:
                connection.execute(statement)


def test_a_session_that_runs_out_has_its_socket_closed_within_the_refresh_interval(locked):
    session = key_session(locked, admin_session(locked).post(
        locked.url("/api/keys"), json={"name": "expiring", "rate_limit": 1000}).json()["api_key"])
    cookie = cookie_header(session)
    expires_at = time.time() + 2.0

    async def go():
        async with aiohttp.ClientSession() as client:
            socket = await open_socket(client, locked, cookie)
            await in_thread(_bring_expiry_forward, locked, session.cookies[COOKIE], expires_at)
            result = await until_closed(socket, timeout=10)
            return result, time.time()

    (messages, code), closed_at = asyncio.run(go())
    assert revoked(messages, "session_expired") and code == 4401, (messages, code)
    print(f"\nsocket closed {closed_at - expires_at:.2f} s after its session ran out")
    assert expires_at <= closed_at < expires_at + REFRESH + 1.0
    assert asyncio.run(handshake_status(locked, cookie)) == 401


@pytest.fixture
def pair(make_host, tmp_path):
    """Two processes sharing one database (require mode, admin password)."""
    url = fresh_postgres_database() if ON_POSTGRES else f"sqlite:///{tmp_path / 'shared' / 'auth.db'}"
    env = {"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD, "COMFYUI_API_AUTH_DB": url,
           "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2", "COMFYUI_API_AUTH_REFRESH_INTERVAL": "1"}
    hosts = [make_host(env=env) for _ in range(2)]
    yield hosts
    for host in hosts:
        host.stop()
    if ON_POSTGRES:
        drop_postgres_database(url)


def test_a_revocation_on_one_process_closes_sockets_on_another_within_the_refresh_interval(pair):
    here, there = pair
    admin = admin_session(here)
    key = admin.post(here.url("/api/keys"), json={"name": "far", "rate_limit": 1000}).json()
    signed_in = admin_session(here)
    bearer = {"Authorization": f"Bearer {key['api_key']}"}
    deadline = time.time() + 5
    # the key and the session reach the other process
    while (there.get("/api/features", headers=bearer).status_code != 200
           or there.get("/api/features", headers=cookie_header(signed_in)).status_code != 200):
        assert time.time() < deadline
        time.sleep(0.1)

    async def go():
        async with aiohttp.ClientSession() as client:
            key_socket = await open_socket(client, there, bearer)
            session_socket = await open_socket(client, there, cookie_header(signed_in))
            started = time.monotonic()
            await in_thread(admin.delete, here.url(f"/api/keys/{key['key_id']}"))
            await in_thread(signed_in.post, here.url("/api/auth/logout"))
            results = [await until_closed(socket, timeout=5) for socket in (key_socket, session_socket)]
            return results, time.monotonic() - started

    (key_closed, session_closed), elapsed = asyncio.run(go())
    print(f"\nsockets on the other process closed {elapsed:.2f} s after the revocation")
    assert revoked(key_closed[0], "key_revoked") and key_closed[1] == 4401, key_closed
    assert revoked(session_closed[0], "signed_out") and session_closed[1] == 4401, session_closed
    assert elapsed < 1 + 1.0  # the refresh interval (1 s) and some slack
    assert asyncio.run(handshake_status(there, bearer)) == 401


# ---- a session cookie opens a socket only from the page's own origin -------------------------------
# The server is reached by a name, as on a real deployment: ComfyUI's own origin
# check covers only loopback Host names (and lets "Origin: null" through).

def test_a_websocket_with_a_session_cookie_must_come_from_the_same_origin(locked):
    site = f"comfy.example.test:{locked.port}"
    cookie = {**cookie_header(admin_session(locked)), "Host": site}
    for origin in (f"http://evil.example.test:{locked.port}",   # a sibling subdomain
                   "http://comfy.example.test:8080",             # the same name on another port
                   "null"):                                      # a sandboxed frame, a file
        assert asyncio.run(handshake_status(locked, {**cookie, "Origin": origin})) == 403, origin
        assert asyncio.run(handshake_status(locked, {**cookie, "Origin": origin}, "/api/ws")) == 403, origin
    assert asyncio.run(handshake_status(locked, {**cookie, "Origin": f"http://{site}"})) == 101
    assert asyncio.run(handshake_status(locked, cookie)) == 101  # no Origin: not a browser
    # a key in a header is no ambient credential: any origin may use it
    key = requests.post(locked.url("/api/keys"), json={"name": "cross-origin app"},
                        headers={"Cookie": cookie["Cookie"]}).json()
    assert asyncio.run(handshake_status(locked, {"Authorization": f"Bearer {key['api_key']}", "Host": site,
                                                 "Origin": f"http://evil.example.test:{locked.port}"})) == 101


def test_the_cross_origin_refusal_says_why(locked):
    site = f"comfy.example.test:{locked.port}"
    response = requests.get(locked.url("/ws"), headers={
        **cookie_header(admin_session(locked)), "Host": site, "Origin": f"http://evil.example.test:{locked.port}",
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert response.status_code == 403 and response.json()["error_code"] == "CROSS_ORIGIN"
