"""The runtime's parts one by one, in this process: the key cache, the quota
claims, the batch writer and the database thread (see ``service/``).

Each test starts a real ``AuthRuntime`` on a real database (SQLite in a
temporary folder, or PostgreSQL with TEST_DATABASE_URL). Another process's
changes are made with the repository on the same database, unseen by the
runtime's caches until they refresh.
"""

import asyncio
import contextlib
import time

import pytest

from conftest import ON_POSTGRES, drop_postgres_database, fresh_postgres_database, package_module

pytestmark = pytest.mark.asyncio

AuthRuntime = package_module("runtime").AuthRuntime
StorageUnavailable = package_module("service.dbthread").StorageUnavailable
token_hash = package_module("service.signin").token_hash
key_format = package_module("core.keys")
repository = package_module("storage.repository")
window_start = package_module("core.ratelimit").window_start


@contextlib.asynccontextmanager
async def runtimes(tmp_path, count=1):
    """``count`` started runtimes sharing one database (one per process: the
    Peewee models are bound to one database)."""
    environ = {"COMFYUI_API_AUTH": "require"}
    database = fresh_postgres_database() if ON_POSTGRES else None
    if database:
        environ["COMFYUI_API_AUTH_DB"] = database
    started = []
    try:
        for _ in range(count):
            runtime = AuthRuntime(str(tmp_path / "data"), environ=environ)
            runtime.load_settings()
            await runtime.start()
            assert runtime.ready, runtime.problem
            started.append(runtime)
        yield started
    finally:
        for runtime in started:
            await runtime.stop()
        if database:
            drop_postgres_database(database)


def sql(statement):
    """A function for ``db.run``: one statement on the database thread's connection."""
    def run(database):
        return database.execute_sql(statement).fetchall() if statement.lstrip().startswith("SELECT") \
            else database.execute_sql(statement)
    return run


# ---- KeyCache ---------------------------------------------------------------------------

async def test_the_key_cache_remembers_and_forgets_a_key_with_its_principal_bearers_and_sessions(tmp_path):
    async with runtimes(tmp_path) as (runtime,):
        keys = runtime.keys
        record, secret = await runtime.key_store.create_key("ops", 100, {}, ["admin"])
        assert key_format.digest_key(secret) not in keys.principals  # built on first use
        principal = keys.principal_of(key_format.digest_key(secret))
        assert principal is keys.principals[key_format.digest_key(secret)]  # and kept
        assert principal.key == record and keys.by_pk[record.pk] is principal.key
        assert record.pk in keys.admin_keys and keys.admin_exists
        token = await runtime.sign_in.open_session("key", record.pk, "127.0.0.1")
        assert keys.sessions[token_hash(token)][:2] == ("key", record.pk)

        keys.verified_bearers[f"Bearer {secret}"] = principal
        updated = await runtime.key_store.update_key(record.key_id, {"scopes": ["generate"]})
        assert keys.verified_bearers == {}  # any change: every verified header is checked again
        assert keys.principals[key_format.digest_key(secret)].key is updated
        assert record.pk not in keys.admin_keys and not keys.admin_exists

        keys.verified_bearers[f"Bearer {secret}"] = principal
        keys.forget(record.pk)
        assert keys.verified_bearers == {} and record.pk not in keys.by_pk
        assert key_format.digest_key(secret) not in keys.principals
        assert token_hash(token) not in keys.sessions  # the key's sessions go with it


async def test_the_key_cache_refresh_picks_up_what_another_process_changed(tmp_path):
    # Another process writes to the database without this cache knowing: the
    # repository called directly, as that process's runtime would.
    async with runtimes(tmp_path) as (runtime,):
        db, keys = runtime.db, runtime.keys
        secret = key_format.generate_key()
        record = await db.run(repository.create_key, key_id=key_format.generate_key_id(),
                              key_hash=key_format.hash_key(secret), prefix=key_format.display_prefix(secret),
                              name="elsewhere", rate_limit=100, metadata={}, scopes=[], now=time.time())
        session, _ = await db.run(repository.create_session, token_hash="ab" * 32, kind="key", key_pk=record.pk,
                                  client="10.0.0.1", now=time.time(), ttl=3600, max_live=10)
        assert record.pk not in keys.by_pk
        await keys.refresh(time.time())
        assert keys.principal_of(key_format.digest_key(secret)).key.pk == record.pk
        assert "ab" * 32 in keys.sessions

        await db.run(repository.update_key, record.key_id, {"is_active": False}, time.time())
        await db.run(repository.end_session, "ab" * 32, time.time())
        await keys.refresh(time.time())
        assert not keys.by_pk[record.pk].is_active and "ab" * 32 not in keys.sessions

        await db.run(repository.delete_key, record.key_id, time.time())
        await keys.refresh(time.time())
        assert record.pk not in keys.by_pk and keys.principal_of(key_format.digest_key(secret)) is None

        assert not keys.admin_password_set and not keys.admin_exists
        await db.run(repository.set_admin_password_hash, b"$2b$12$" + b"x" * 53, time.time())
        await keys.refresh(time.time())
        assert keys.admin_password_set and keys.admin_exists


async def test_a_refresh_that_read_before_a_sign_out_does_not_bring_the_session_back(tmp_path):
    # CI on PostgreSQL once let a signed-out cookie open a socket: the periodic
    # refresh had read the session rows just before the sign-out's write, and put
    # the session back after the sign-out had dropped it. Here the refresh is queued
    # on the database thread first, every time.
    async with runtimes(tmp_path) as (runtime,):
        token = await runtime.sign_in.open_session("admin", None, "127.0.0.1")
        assert token_hash(token) in runtime.keys.sessions  # and the cache's revision is behind it
        await asyncio.gather(runtime.keys.refresh(time.time()), runtime.sign_in.end_session(token))
        assert token_hash(token) not in runtime.keys.sessions
        await runtime.keys.refresh(time.time())
        assert token_hash(token) not in runtime.keys.sessions


# ---- QuotaClaims ------------------------------------------------------------------------

async def test_quota_claimed_in_a_batch_and_not_spent_is_given_back_by_the_last_flush(tmp_path):
    async with runtimes(tmp_path) as (runtime,):
        claims = runtime.claims
        assert claims.quota is not None  # shared limits are on by default
        record, _ = await runtime.key_store.create_key("script", 800, {}, [])
        now = time.time()
        window = window_start(now)
        assert await claims.spend_request(record, now) == 799
        claimed = (await runtime.db.run(repository.rate_counts, window, [record.pk]))[record.pk]
        assert claimed > 1  # a batch, claimed ahead of the requests
        assert claims.quota.unspent_of(record.pk, window) == claimed - 1
        assert await claims.requests_this_hour([record.pk]) == {record.pk: 1}

        runtime.flush_sync()  # what a stopping process does
        assert (await runtime.db.run(repository.rate_counts, window, [record.pk]))[record.pk] == 1


async def test_concurrent_requests_share_one_claim(tmp_path):
    async with runtimes(tmp_path) as (runtime,):
        record, _ = await runtime.key_store.create_key("burst", 80, {}, [])
        now = time.time()
        spent = await asyncio.gather(*(runtime.claims.spend_request(record, now) for _ in range(30)))
        assert sorted(spent, reverse=True) == list(range(79, 49, -1))
        claimed = (await runtime.db.run(repository.rate_counts, window_start(now), [record.pk]))[record.pk]
        assert 30 <= claimed <= 80


# ---- BatchWriter ------------------------------------------------------------------------

async def test_a_batch_that_fails_to_write_is_kept_and_written_by_the_next_flush(tmp_path):
    async with runtimes(tmp_path) as (runtime,):
        record, _ = await runtime.key_store.create_key("script", 100, {}, [])
        now = time.time()
        cells = runtime.usage.cells_for(("/queue", "GET"))
        runtime.usage.record(cells, record.pk, True, 0.01, now, window_start(now))
        runtime.audit("probe", "test")
        await runtime.db.run(sql("ALTER TABLE api_auth_usage_hourly RENAME TO api_auth_usage_away"))
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await runtime.flush()
        assert runtime.refusing is not None  # writes fail: 503 until they work again
        assert runtime.usage.pending_for(record.pk)  # the counts were put back, not lost

        await runtime.db.run(sql("ALTER TABLE api_auth_usage_away RENAME TO api_auth_usage_hourly"))
        await runtime.flush()
        assert runtime.refusing is None and not runtime.usage.pending_for(record.pk)
        rows = await runtime.db.run(repository.usage_rows, record.pk, int(now) // 3600 * 3600)
        assert [(route, method, ok) for _, route, method, ok, _, _ in rows] == [("/queue", "GET", 1)]
        events = await runtime.db.run(repository.audit_events, 10)
        assert [event["action"] for event in events].count("probe") == 1


# ---- DatabaseThread ---------------------------------------------------------------------

async def test_the_database_thread_reconnects_after_its_connection_broke(tmp_path):
    async with runtimes(tmp_path) as (runtime,):
        db = runtime.db
        await runtime.key_store.create_key("script", 100, {}, [])
        old = await db.run(lambda database: database.connection())
        if ON_POSTGRES:
            # The server ends the connection (a restart, a failover, an idle timeout).
            import psycopg2
            pid = (await db.run(sql("SELECT pg_backend_pid()")))[0][0]
            killer = psycopg2.connect(runtime.settings.db_url)
            killer.autocommit = True
            try:
                killer.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
            finally:
                killer.close()
            with pytest.raises(StorageUnavailable):
                await db.run(repository.current_revision)
        else:
            # SQLite: an operational error (here a table that is not there)
            # closes the connection the same way.
            with pytest.raises(StorageUnavailable):
                await db.run(sql("SELECT * FROM no_such_table"))
        assert db.database.is_closed()
        assert await db.run(repository.current_revision) >= 1  # a new connection, no restart
        assert await db.run(lambda database: database.connection()) is not old
