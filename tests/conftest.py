"""Fixtures: the package loaded as ComfyUI would load it, and live servers.

``host`` starts the ComfyUI stand-in (``tests/comfyui_host``) as a real
process on a free loopback port with this repository as a custom node, so
tests speak real HTTP, and can kill -9 and restart it.
"""

import importlib
import importlib.util
import os
import sys

import pytest
import requests

from standin import HOST_DIR, REPO, StandIn, free_port  # noqa: F401 (tests import them from here)

PACKAGE = "comfyui_api_auth"
# Set to a PostgreSQL server URL (e.g. postgresql://comfy:comfy@127.0.0.1:5432/postgres)
# to run every server of the suite on its own fresh PostgreSQL database.
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
ON_POSTGRES = POSTGRES_URL.startswith("postgres")
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="checks the SQLite file itself")


def _postgres(statement):
    import psycopg2
    connection = psycopg2.connect(POSTGRES_URL)
    connection.autocommit = True
    try:
        connection.cursor().execute(statement)
    finally:
        connection.close()


def fresh_postgres_database() -> str:
    name = "apiauth_" + os.urandom(6).hex()
    _postgres(f"CREATE DATABASE {name}")
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(url: str):
    _postgres(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def load_package():
    """Import the repository as a package, the way ComfyUI imports custom nodes."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, os.path.join(REPO, "__init__.py"), submodule_search_locations=[REPO])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def package_module(name: str):
    load_package()
    return importlib.import_module(f"{PACKAGE}.{name}")


def host_data_dir(host) -> str:
    """A host's data directory (the package's layout, see paths.py)."""
    return package_module("paths").data_dir(host.user_dir)


def host_db_file(host) -> str:
    """A host's SQLite database file."""
    return package_module("paths").db_file(host_data_dir(host))


def query_url(url, sql):
    """Rows of a query against a database URL (SQLite file or PostgreSQL)."""
    if url.startswith("postgres"):
        import psycopg2
        connection = psycopg2.connect(url)
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            return cursor.fetchall()
        finally:
            connection.close()
    import sqlite3
    connection = sqlite3.connect(url[len("sqlite:///"):])
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def query_database(host, sql):
    """Rows of a query against a host's database (SQLite file or PostgreSQL)."""
    if host.own_database or host.env.get("COMFYUI_API_AUTH_DB", "").startswith("postgres"):
        return query_url(host.own_database or host.env["COMFYUI_API_AUTH_DB"], sql)
    return query_url("sqlite:///" + host_db_file(host), sql)


def change_database(host, *statements):
    """Run statements on a host's database and commit (as another program would)."""
    url = host.own_database or host.env.get("COMFYUI_API_AUTH_DB", "")
    if url.startswith("postgres"):
        import psycopg2
        connection = psycopg2.connect(url)
        with connection, connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        connection.close()
        return
    import sqlite3
    connection = sqlite3.connect(host_db_file(host))
    with connection:
        for statement in statements:
            connection.execute(statement)
    connection.close()


def old_database(url, version, keys):
    """Write the database at ``url`` as package version ``version`` left it: its
    migration steps only, and ``keys`` ((NewKey, name, scopes text) each) in
    the columns every version has had. For upgrade tests."""
    import time
    migrations = package_module("storage.migrations")
    models = package_module("storage.models")
    database = package_module("storage.database").open_database(url)
    database.bind(models.ALL_MODELS)
    with database.atomic():
        for _version, step in migrations.MIGRATIONS[:version]:
            step(database)
        models.MetaValue.insert(name=migrations.SCHEMA_VERSION_NAME, number=version).execute()
        marks = ", ".join([database.param] * 11)
        for made, name, scopes in keys:
            database.execute_sql(
                "INSERT INTO api_auth_keys (key_id, key_hash, prefix, name, rate_limit, is_active, metadata, scopes, "
                f"created_at, updated_at, revision) VALUES ({marks})",
                (made.key_id, made.key_hash, made.prefix, name, 1000, True, "{}", scopes, time.time(), time.time(), 1))
    database.close()


def concurrent_gets(url, headers, count):
    """``count`` GETs sent at once: [(status, headers)]."""
    import asyncio

    import aiohttp

    async def go():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=count)) as client:
            async def one():
                async with client.get(url, headers=headers) as response:
                    await response.read()
                    return response.status, dict(response.headers)
            return await asyncio.gather(*(one() for _ in range(count)))
    return asyncio.run(go())


def requests_this_hour(admin, host, key):
    """A key's requests this hour, read by an admin session (which charges the key nothing)."""
    return admin.get(host.url(f"/api/keys/{key['key_id']}"), timeout=10).json()["requests_this_hour"]


OTHER_NODES = [os.path.join(os.path.dirname(__file__), "other_nodes", name) for name in ("manager_like", "unknown_node")]


class Host(StandIn):
    """One ComfyUI stand-in process with the package installed (see ``standin.StandIn``).

    Most tests manage keys freely from loopback, so in ``enable`` mode a host
    makes local requests full admin (``COMFYUI_API_AUTH_TRUST_LOCALHOST=on``)
    unless the test sets the variable or asks for the shipped default with
    ``local_admin=False`` (``bootstrap``: non-admin keys only, until an admin exists)."""

    def __init__(self, workdir, env=None, listen="127.0.0.1", extra_args=(), local_admin=True, other_nodes=True):
        env = dict(env or {})
        if other_nodes:  # as a real ComfyUI has other custom nodes beside this one (tests/other_nodes)
            extra_args = [*extra_args, *(arg for name in OTHER_NODES for arg in ("--custom-node", name))]
        if local_admin and env.get("COMFYUI_API_AUTH", "enable") == "enable":
            env.setdefault("COMFYUI_API_AUTH_TRUST_LOCALHOST", "on")
        super().__init__(workdir, env=env, listen=listen, extra_args=extra_args)
        self.own_database = None
        if ON_POSTGRES and "COMFYUI_API_AUTH_DB" not in self.env:
            self.own_database = self.env["COMFYUI_API_AUTH_DB"] = fresh_postgres_database()

    def discard(self):
        """Stop it and drop its own PostgreSQL database, if it made one."""
        self.stop()
        if self.own_database:
            drop_postgres_database(self.own_database)

    # small helpers for readable tests
    def get(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.get(self.url(path), **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.post(self.url(path), **kw)

    def patch(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.patch(self.url(path), **kw)

    def put(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.put(self.url(path), **kw)

    def delete(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.delete(self.url(path), **kw)

    def create_key(self, name="test key", headers=None, **fields):
        response = self.post("/api/keys", json={"name": name, **fields}, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def make_host(tmp_path):
    hosts = []

    def make(env=None, **kwargs):
        host = Host(tmp_path / f"host{len(hosts)}", env=env, **kwargs)
        os.makedirs(host.workdir, exist_ok=True)
        hosts.append(host)
        return host.start()

    yield make
    for host in hosts:
        host.discard()


@pytest.fixture
def host(make_host):
    """A local install in enable mode whose local requests are admin (see Host)."""
    return make_host()


@pytest.fixture
def fresh_host(make_host):
    """A fresh install with every setting at its shipped default."""
    return make_host(local_admin=False)
