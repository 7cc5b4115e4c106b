"""Open a database from a URL (``sqlite:///path`` or ``postgresql://…``)."""

import os

import peewee
from playhouse.db_url import connect

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    # FULL: a create acknowledged to a client survives power loss and kill -9.
    "synchronous": "full",
    "busy_timeout": 10000,
    "foreign_keys": 1,
}


class DatabaseUrlError(ValueError):
    pass


def sqlite_url(path: str) -> str:
    return "sqlite:///" + os.path.abspath(path)


def open_database(url: str) -> peewee.Database:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
        if not path:
            raise DatabaseUrlError("SQLite URLs look like sqlite:////absolute/path/auth.db")
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        database = peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=10)
    elif scheme in ("postgres", "postgresql", "postgresext", "postgresqlext"):
        database = connect(url)
    else:
        raise DatabaseUrlError(f"unsupported database URL scheme '{scheme}'")
    database.connect(reuse_if_open=True)
    return database


def describe(url: str) -> str:
    """The URL without its password, for log lines."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
