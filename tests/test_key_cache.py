"""The key cache with many keys: packed, one bytes per key, a record and a
principal built only for keys in use (see ``service/keycache.py``).

In this process, on a real database (SQLite in a temporary folder, or
PostgreSQL with TEST_DATABASE_URL); tests/test_many_keys.py starts servers
on 20,000 keys.
"""

import contextlib
import gc
import secrets
import time
import tracemalloc

import pytest

from conftest import ON_POSTGRES, drop_postgres_database, fresh_postgres_database, package_module

pytestmark = pytest.mark.asyncio

AuthRuntime = package_module("runtime").AuthRuntime
keycache = package_module("service.keycache")
principals = package_module("core.principals")
key_format = package_module("core.keys")
repository = package_module("storage.repository")
models = package_module("storage.models")
write_transaction = package_module("storage.database").write_transaction

FILLER = 20_000


@contextlib.asynccontextmanager
async def started_runtime(tmp_path):
    environ = {"COMFYUI_API_AUTH": "require"}
    database = fresh_postgres_database() if ON_POSTGRES else None
    if database:
        environ["COMFYUI_API_AUTH_DB"] = database
    runtime = AuthRuntime(str(tmp_path / "data"), environ=environ)
    runtime.load_settings()
    await runtime.start()
    try:
        assert runtime.ready, runtime.problem
        yield runtime
    finally:
        await runtime.stop()
        if database:
            drop_postgres_database(database)


def insert_filler(database, count, now):
    """``count`` keys nobody will present, in one transaction (as bench/fill.py does)."""
    with write_transaction(database):
        revision = repository._next_revision()
        for start in range(0, count, 1000):
            models.ApiKey.insert_many([{
                "key_id": secrets.token_hex(8), "key_hash": secrets.token_hex(32), "prefix": "comfy_abcd",
                "name": f"filler-{i}", "rate_limit": 100, "is_active": True, "metadata": "{}", "scopes": "",
                "created_at": now, "updated_at": now, "revision": revision,
            } for i in range(start, min(count, start + 1000))]).execute()


def create(database, name, scopes=(), metadata=None, **fields):
    secret = key_format.generate_key()
    record = repository.create_key(database, key_id=key_format.generate_key_id(), key_hash=key_format.hash_key(secret),
                                   prefix=key_format.display_prefix(secret), name=name, rate_limit=100,
                                   metadata=metadata or {}, scopes=list(scopes), now=time.time(), **fields)
    return record, secret


async def test_many_keys_load_packed_in_a_few_hundred_bytes_each_and_nothing_built(tmp_path):
    async with started_runtime(tmp_path) as runtime:
        await runtime.db.run(insert_filler, FILLER, time.time())
        # tracemalloc counts every thread, and the started runtime's own periodic
        # work (flush, refresh) allocates meanwhile: the least of three loads is
        # the cache's own size, give or take.
        measured = []
        for _ in range(3):
            fresh = keycache.KeyCache(runtime.db)
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                await runtime.db.run(fresh.load, time.time())
                gc.collect()
                measured.append(tracemalloc.get_traced_memory()[0] - before)
            finally:
                tracemalloc.stop()
        held = min(measured)
        assert len(fresh.by_pk) == FILLER
        # A KeyRecord (metadata dict, scopes tuple, hex hash) and a Principal per
        # key held about 820 bytes (and the RSS of the start twice that); packed, about 290.
        print(f"\n{held / FILLER:.0f} bytes per key")
        assert held / FILLER < 450, f"{held / FILLER:.0f} bytes per key"
        assert fresh.principals == {}  # no record or principal until a key is used


async def test_a_packed_key_is_built_on_first_use_with_every_field_and_kept(tmp_path):
    async with started_runtime(tmp_path) as runtime:
        metadata = {"team": "é\u0000\U0001F600", "nested": {"n": [1, 2.5, None]}}
        plain, plain_secret = await runtime.db.run(create, "plain", metadata=metadata)
        limited, limited_secret = await runtime.db.run(
            create, "naïve \u202e name", scopes=["admin", "queue"],
            job_limits={"prompts_per_hour": 0, "max_waiting": 1_000_000_000})
        await runtime.db.run(repository.write_usage, {}, {limited.pk: 1234.5})
        fresh = keycache.KeyCache(runtime.db)
        await runtime.db.run(fresh.load, time.time())
        assert fresh.principals == {} and fresh.admin_keys == {limited.pk}  # the admin set from the rows

        built = fresh.principal_of(key_format.digest_key(plain_secret))
        assert built.kind == principals.KEY_KIND and built.via == "header"
        assert built.key == plain and built.key.metadata == metadata
        assert built.key.last_used is None and built.key.prompts_per_hour is None and built.key.max_waiting is None
        assert fresh.principal_of(key_format.digest_key(plain_secret)) is built  # built once
        assert fresh.by_pk[plain.pk] is built.key and fresh.by_pk.get(plain.pk) is built.key

        admin = fresh.by_pk.get(limited.pk)  # by pk builds it too (sessions, sockets)
        assert admin.name == "naïve \u202e name" and admin.scopes == ("admin", "queue") and admin.is_admin
        assert (admin.last_used, admin.prompts_per_hour, admin.max_waiting) == (1234.5, 0, 1_000_000_000)
        assert fresh.principal_of(key_format.digest_key(limited_secret)).kind == principals.ADMIN_KIND
        assert fresh.principal_of(key_format.digest_key("comfy_" + "0" * 43)) is None
        assert fresh.by_pk.get(-1) is None and -1 not in fresh.by_pk


async def test_changes_to_packed_keys_apply_whether_built_or_not(tmp_path):
    async with started_runtime(tmp_path) as runtime:
        db = runtime.db
        await db.run(insert_filler, 1000, time.time())
        used, used_secret = await db.run(create, "used", scopes=["admin"])
        idle, idle_secret = await db.run(create, "idle", scopes=["admin"])
        gone, gone_secret = await db.run(create, "gone")
        keys = keycache.KeyCache(db)
        await db.run(keys.load, time.time())
        assert keys.admin_keys == {used.pk, idle.pk}
        keys.principal_of(key_format.digest_key(used_secret))
        keys.verified_bearers[f"Bearer {used_secret}"] = keys.principals[key_format.digest_key(used_secret)]

        # another process disables one built and one never built key, and deletes one
        for record in (used, idle):
            await db.run(repository.update_key, record.key_id, {"is_active": False, "name": "off"}, time.time())
        await db.run(repository.delete_key, gone.key_id, time.time())
        await keys.refresh(time.time())
        assert keys.verified_bearers == {}
        for secret in (used_secret, idle_secret):
            record = keys.principal_of(key_format.digest_key(secret)).key
            assert not record.is_active and record.name == "off"
        assert keys.admin_keys == set()  # disabled admin keys let nobody in
        assert keys.principal_of(key_format.digest_key(gone_secret)) is None and gone.pk not in keys.by_pk
        assert key_format.digest_key(gone_secret) not in keys.packed
        assert len(keys.by_pk) == 1002

        # listing every key (KeyStore.list_keys remembers them) builds none of them
        keys.principals.clear()
        for record in await db.run(repository.list_keys):
            keys.remember(record)
        assert keys.principals == {} and len(keys.by_pk) == 1002
        keys.forget(idle.pk)
        assert idle.pk not in keys.by_pk and key_format.digest_key(idle_secret) not in keys.packed
