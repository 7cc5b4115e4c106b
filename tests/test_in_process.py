"""The middleware and the runtime objects in this process, with pytest-aiohttp.

The other tests run ComfyUI (the stand-in) as a process and speak HTTP to
it; these put the package's middleware in front of a tiny aiohttp app with
a real, started ``AuthRuntime`` (its own database: SQLite in a temporary
folder, or PostgreSQL with TEST_DATABASE_URL) and look at the decisions and
at the runtime's state after them. The app's routes are ComfyUI's paths; the
policy decides on their templates before any handler runs.
"""

import contextlib
import logging

import pytest
from aiohttp import web

from conftest import ON_POSTGRES, drop_postgres_database, fresh_postgres_database, package_module

pytestmark = pytest.mark.asyncio

AuthRuntime = package_module("runtime").AuthRuntime
create_middleware = package_module("server_routes.middleware").create_middleware
PromptGate = package_module("server_routes.prompt_gate").PromptGate


@contextlib.asynccontextmanager
async def started_runtime(tmp_path, mode="require", **settings):
    environ = {"COMFYUI_API_AUTH": mode, **{f"COMFYUI_API_AUTH_{name.upper()}": value for name, value in settings.items()}}
    database = environ["COMFYUI_API_AUTH_DB"] = fresh_postgres_database() if ON_POSTGRES else None
    if database is None:
        del environ["COMFYUI_API_AUTH_DB"]
    runtime = AuthRuntime(str(tmp_path / "data"), environ=environ)
    runtime.load_settings()
    await runtime.start()
    assert runtime.ready, runtime.problem
    try:
        yield runtime
    finally:
        await runtime.stop()
        if database:
            drop_postgres_database(database)


def comfy_like_app(runtime, calls):
    """ComfyUI's /api/queue, /api/keys and /api/prompt behind the package's middleware."""
    gate = PromptGate(runtime)
    app = web.Application(middlewares=[create_middleware(runtime, hooks=(gate,))])

    async def handler(request):
        calls.append(request.path)
        return web.json_response({"ok": True})

    async def post_prompt(request):
        # ComfyUI's order: read the JSON, run the on-prompt handlers, then take prompt_id
        calls.append(request.path)
        body = gate.on_prompt(await request.json())
        return web.json_response({"prompt_id": body.get("prompt_id"), "number": 0, "node_errors": {}})

    app.router.add_get("/api/queue", handler)
    app.router.add_get("/api/keys", handler)  # an admin route by its template, whoever handles it
    app.router.add_post("/api/prompt", post_prompt)
    return app


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


async def test_require_mode_answers_401_without_a_key_and_the_handler_never_runs(aiohttp_client, tmp_path):
    calls = []
    async with started_runtime(tmp_path) as runtime:
        client = await aiohttp_client(comfy_like_app(runtime, calls))
        response = await client.get("/api/queue")
        assert response.status == 401
        assert (await response.json())["error_code"] == "AUTH_REQUIRED"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert calls == []


async def test_a_bearer_key_passes_with_rate_limit_headers_and_the_runtime_counts_it(aiohttp_client, tmp_path):
    calls = []
    async with started_runtime(tmp_path) as runtime:
        key, secret = await runtime.key_store.create_key("script", 3, {}, ["generate"])
        client = await aiohttp_client(comfy_like_app(runtime, calls))
        remaining = []
        for _ in range(3):
            response = await client.get("/api/queue", headers=bearer(secret))
            assert response.status == 200 and response.headers["X-RateLimit-Limit"] == "3"
            assert int(response.headers["X-RateLimit-Reset"]) % 3600 == 0
            remaining.append(response.headers["X-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        refused = await client.get("/api/queue", headers=bearer(secret))
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
        assert calls == ["/api/queue"] * 3
        # the runtime remembers the verified header and holds the counts until its next flush
        assert runtime.keys.verified_bearers[f"Bearer {secret}"].key.pk == key.pk
        counts = {(route, method): cell[:2] for (_, _, route, method), cell in runtime.usage.pending_for(key.pk).items()}
        assert counts == {("/queue", "GET"): [3, 1]}


async def test_a_basic_header_with_a_key_is_remembered_as_a_bearer_header_is(aiohttp_client, tmp_path):
    import base64
    calls = []
    async with started_runtime(tmp_path) as runtime:
        key, secret = await runtime.key_store.create_key("basic", 100, {}, ["generate"])
        client = await aiohttp_client(comfy_like_app(runtime, calls))
        ours = "Basic " + base64.b64encode(f"user:{secret}".encode()).decode()
        foreign = "Basic " + base64.b64encode(b"alice:hunter2").decode()
        assert (await client.get("/api/queue", headers={"Authorization": foreign})).status == 401
        assert (await client.get("/api/queue", headers={"Authorization": ours})).status == 200
        # the next request with this header takes the fast path (one dict lookup)
        assert runtime.keys.verified_bearers[ours].key.pk == key.pk
        assert foreign not in runtime.keys.verified_bearers
        response = await client.get("/api/queue", headers={"Authorization": ours})
        assert response.status == 200 and response.headers["X-RateLimit-Remaining"] == "98"
        await runtime.key_store.update_key(key.key_id, {"is_active": False})
        assert ours not in runtime.keys.verified_bearers
        response = await client.get("/api/queue", headers={"Authorization": ours})
        assert response.status == 401 and (await response.json())["error_code"] == "KEY_DISABLED"
        assert calls == ["/api/queue"] * 2


async def test_a_query_token_is_taken_out_of_the_url_the_handler_sees(aiohttp_client, tmp_path, caplog):
    """...and aiohttp's access log, which logs the URL as it came (ComfyUI turns it
    off; an operator may not), has it redacted by the filter install() adds."""
    seen = []
    access_log = logging.getLogger("aiohttp.access")
    redact = package_module("server_routes.install")._RedactKeys()
    access_log.addFilter(redact)
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    try:
        async with started_runtime(tmp_path, query_token="on") as runtime:
            key, secret = await runtime.key_store.create_key("url", 100, {}, ["generate"])
            app = web.Application(middlewares=[create_middleware(runtime)])

            async def handler(request):
                seen.append((request.path_qs, dict(request.query), request.headers.get("X-API-Key")))
                return web.json_response({"ok": True})

            app.router.add_get("/api/view", handler)
            client = await aiohttp_client(app)
            response = await client.get(f"/api/view?filename=a%20b.png&token={secret}&type=output")
            assert response.status == 200 and response.headers["X-RateLimit-Limit"] == "100"
            (path_qs, query, header), = seen
            assert secret not in path_qs and query == {"filename": "a b.png", "type": "output"}
            assert header == secret  # handed on as the header it is checked as
            other = await client.get("/api/view?filename=x&token=abc")  # not one of ours: left alone
            assert other.status == 401 and seen[-1:] == [(path_qs, query, header)]
    finally:
        access_log.removeFilter(redact)
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert any("/api/view?filename=a%20b.png&token=comfy_[redacted]" in line for line in lines), lines
    assert not any(secret[6:] in line for line in lines), lines


async def test_a_key_without_the_admin_scope_gets_403_on_an_admin_route(aiohttp_client, tmp_path):
    calls = []
    async with started_runtime(tmp_path, mode="enable") as runtime:
        _, plain = await runtime.key_store.create_key("plain", 100, {}, ["generate"])
        _, admin = await runtime.key_store.create_key("ops", 100, {}, ["admin"])
        client = await aiohttp_client(comfy_like_app(runtime, calls))
        response = await client.get("/api/keys", headers=bearer(plain))
        assert response.status == 403 and (await response.json())["error_code"] == "SCOPE_REQUIRED"
        assert (await client.get("/api/keys")).status == 401  # anonymous, even in enable mode
        assert (await client.get("/api/keys", headers=bearer(admin))).status == 200
        assert calls == ["/api/keys"]


async def test_disabling_a_key_refuses_its_next_request(aiohttp_client, tmp_path):
    calls = []
    async with started_runtime(tmp_path) as runtime:
        key, secret = await runtime.key_store.create_key("script", 100, {}, ["generate"])
        client = await aiohttp_client(comfy_like_app(runtime, calls))
        assert (await client.get("/api/queue", headers=bearer(secret))).status == 200
        await runtime.key_store.update_key(key.key_id, {"is_active": False})
        assert f"Bearer {secret}" not in runtime.keys.verified_bearers
        response = await client.get("/api/queue", headers=bearer(secret))
        assert response.status == 401 and (await response.json())["error_code"] == "KEY_DISABLED"
        assert calls == ["/api/queue"]


async def test_a_prompt_queued_with_a_key_belongs_to_that_key(aiohttp_client, tmp_path):
    calls = []
    async with started_runtime(tmp_path) as runtime:
        key, secret = await runtime.key_store.create_key("script", 100, {}, ["generate"])
        client = await aiohttp_client(comfy_like_app(runtime, calls))
        response = await client.post("/api/prompt", json={"prompt": {}}, headers=bearer(secret))
        assert response.status == 200
        prompt_id = (await response.json())["prompt_id"]
        assert runtime.jobs.owner(prompt_id) == (key.pk, "key")
        # someone else's id is not taken over: the second prompt gets a fresh one
        again = await client.post("/api/prompt", json={"prompt": {}, "prompt_id": prompt_id}, headers=bearer(secret))
        assert (await again.json())["prompt_id"] != prompt_id
