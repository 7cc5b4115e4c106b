"""Keys for the benchmarked servers, made through the package's own storage layer.

The package is imported the way ComfyUI (and tests/conftest.py) imports a
custom node; ``use_package`` points at another checkout (``bench.py
--package``). Databases are the servers' SQLite files, or PostgreSQL
databases the bench creates (``--db``).
"""

import importlib
import importlib.util
import os
import secrets
import sys
import time
import types
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "comfyui_api_auth"
PACKAGE_DIR = REPO  # the custom node under test; --package changes it


def use_package(path):
    """Load (and serve) the package from ``path`` instead of this repository."""
    global PACKAGE_DIR
    PACKAGE_DIR = os.path.abspath(path)


def load_package():
    """Import the repository as a package, the way ComfyUI (and tests/conftest.py) does."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, os.path.join(PACKAGE_DIR, "__init__.py"), submodule_search_locations=[PACKAGE_DIR])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def layout():
    """This repository's paths.py (where a server keeps its database), loaded on
    its own: it holds no package imports, and a --package checkout may predate it."""
    if "comfyui_api_auth_layout" not in sys.modules:
        spec = importlib.util.spec_from_file_location("comfyui_api_auth_layout", os.path.join(REPO, "paths.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["comfyui_api_auth_layout"] = module
    return sys.modules["comfyui_api_auth_layout"]


def package_module(name):
    load_package()
    return importlib.import_module(f"{PACKAGE}.{name}")


def open_db(url):
    database_mod = package_module("storage.database")
    migrations = package_module("storage.migrations")
    database = database_mod.open_database(url)
    migrations.ensure_ready(database)
    return database


def write_transaction(database):
    """The package's write transaction (storage.database.write_transaction; a
    --package checkout older than it has repository._write_transaction)."""
    database_mod = package_module("storage.database")
    if hasattr(database_mod, "write_transaction"):
        return database_mod.write_transaction(database)
    return package_module("storage.repository")._write_transaction(database)


def new_key(key_format):
    """keys.new_key() of the package under test; a --package checkout older
    than it gets the same fields from its own key functions."""
    if hasattr(key_format, "new_key"):
        return key_format.new_key()
    plaintext = key_format.generate_key()
    stored = {"key_id": key_format.generate_key_id(), "key_hash": key_format.hash_key(plaintext),
              "prefix": key_format.display_prefix(plaintext)}
    return types.SimpleNamespace(plaintext=plaintext, stored=stored)


def create_keys(url, keys) -> dict:
    """Create real keys through storage.repository.create_key; returns name -> plaintext."""
    key_format = package_module("core.keys")
    repository = package_module("storage.repository")
    database = open_db(url)
    created = {}
    try:
        for name, rate_limit in keys:
            made = new_key(key_format)
            repository.create_key(database, **made.stored, name=name,
                                  rate_limit=rate_limit, metadata={"bench": True}, scopes=["generate"], now=time.time())
            created[name] = made.plaintext
    finally:
        database.close()
    return created


def add_filler_keys(url, count, name_prefix="filler", with_revision_per_key=False) -> float:
    """Insert `count` more keys (never presented) through the package's models,
    in one write transaction. Returns seconds taken.

    Bulk: ApiKey.insert_many in chunks, all rows under one new revision (one
    revision bump, as one transaction that changes many keys would do).
    Per key (with_revision_per_key): repository.create_key for each, each
    with its own revision, as a script calling the CLI or API would.
    """
    models = package_module("storage.models")
    repository = package_module("storage.repository")
    key_format = package_module("core.keys")
    database = open_db(url)
    started = time.perf_counter()
    try:
        with write_transaction(database):
            now = time.time()
            if with_revision_per_key:
                for i in range(count):
                    repository.create_key(database, **new_key(key_format).stored,
                                          name=f"{name_prefix}-{i}", rate_limit=100, metadata={},
                                          scopes=["generate"], now=now)
            else:
                revision = repository._next_revision()
                rows = []
                for i in range(count):
                    # never presented, so not a well-formed key: one token_bytes is far
                    # cheaper than new_key()'s 56 secrets.choice calls, for 100k rows
                    secret = secrets.token_bytes(32)
                    rows.append({
                        "key_id": secrets.token_hex(8), "key_hash": key_format.hash_key(secret.hex()),
                        "prefix": "comfy_" + secret.hex()[:4], "name": f"{name_prefix}-{i}",
                        "rate_limit": 100, "is_active": True, "metadata": "{}", "scopes": "generate",
                        "created_at": now, "updated_at": now, "last_used": None, "deleted_at": None,
                        "revision": revision,
                    })
                    if len(rows) == 1000:
                        models.ApiKey.insert_many(rows).execute()
                        rows = []
                if rows:
                    models.ApiKey.insert_many(rows).execute()
    finally:
        database.close()
    return time.perf_counter() - started


def count_keys(url) -> int:
    models = package_module("storage.models")
    database = open_db(url)
    try:
        return models.ApiKey.select().where(models.ApiKey.deleted_at.is_null()).count()
    finally:
        database.close()


def postgres_database_url(url: str, name: str) -> str:
    """The same PostgreSQL server and credentials, another database."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def postgres_execute(url: str, sql: str):
    """One statement outside a transaction (CREATE/DROP DATABASE need that)."""
    import psycopg2  # only with --db postgresql://...

    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()
