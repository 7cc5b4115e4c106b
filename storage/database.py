"""Open a database from a URL (``sqlite:///path`` or ``postgresql://…``)."""

import os
import re

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


# A password in a URL's user part (``scheme://user:pw@host``; greedy, so a
# password holding "@" is masked whole) and in an option of a URL query, a
# libpq connection string or a dict's repr (``?password=``, ``&sslpassword=``,
# ``pass=``, ``passwd=``, ``pwd=``, ``'password': '...'``). A bare value runs
# to the next space, "&" or quote (more masked rather than a password's tail
# left); a quoted one to its closing quote.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):[^\s]*@")
_OPTION_PASSWORD = re.compile(
    r"((?<![A-Za-z0-9_])(?:ssl)?(?:password|passwd|pass|pwd)(?:\s*=\s*|['\"]\s*:\s*))"
    r"(?:'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^&\s'\"]*)",
    re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with every database password in it replaced by ``***``: for any
    log line that can carry a database URL or a driver's error message."""
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    return _OPTION_PASSWORD.sub(r"\1***", text)


def write_transaction(database):
    """A transaction for a write. On SQLite it takes the write lock up front
    (IMMEDIATE), so two processes cannot both read, decide, then have one
    fail to upgrade its lock; PostgreSQL's row locks do that job there."""
    if isinstance(database, peewee.SqliteDatabase):
        return database.atomic("IMMEDIATE")
    return database.atomic()


def describe(url: str) -> str:
    """The URL without its passwords, for log lines."""
    return mask_secrets(url)
