"""Versioned schema. Each step runs once, in order, inside a transaction.

A database written by a newer version of the package stops the package with
:class:`SchemaTooNew` rather than being used (and perhaps damaged) by code
that does not know its tables.
"""

import logging

import peewee
from playhouse.migrate import SchemaMigrator, migrate as apply_operations

from .database import write_transaction
from .models import (ALL_MODELS, ApiKey, AuditEvent, FileOwner, Job, LoginAttempt, MetaValue, RateWindow, Session,
                     UsageHourly)

log = logging.getLogger(__name__)

SCHEMA_VERSION_NAME = "schema_version"
ADVISORY_LOCK_ID = 0x41504B59  # "APKY": serialises migrations across processes


class SchemaTooNew(RuntimeError):
    pass


def _create_v1(database):
    # v1's key table had no prompt limits; create it as v1 had it so that the
    # v2 step below runs the same on a fresh and on an old database.
    class ApiKeyV1(ApiKey):
        class Meta:
            table_name = ApiKey._meta.table_name

    for name in ("prompts_per_hour", "max_waiting") + V5_KEY_COLUMNS:
        ApiKeyV1._meta.remove_field(name)

    class SessionV1(Session):
        class Meta:
            table_name = Session._meta.table_name

    SessionV1._meta.remove_field("key_generation")
    database.create_tables([MetaValue, ApiKeyV1, SessionV1, UsageHourly, RateWindow])
    MetaValue.insert(name="revision", number=0).on_conflict_ignore().execute()


def _jobs_limits_and_audit_v2(database):
    migrator = SchemaMigrator.from_database(database)
    apply_operations(
        migrator.add_column(ApiKey._meta.table_name, "prompts_per_hour", ApiKey.prompts_per_hour),
        migrator.add_column(ApiKey._meta.table_name, "max_waiting", ApiKey.max_waiting),
    )
    database.create_tables([Job, AuditEvent])


def _login_attempts_and_session_index_v3(database):
    database.create_tables([LoginAttempt])
    # Finds an owner's live sessions (key_pk = ? / IS NULL, ended_at IS NULL)
    # without reading its ended ones. IF NOT EXISTS: harmless where an operator
    # added it by hand.
    database.execute_sql(f"CREATE INDEX IF NOT EXISTS api_auth_sessions_owner_live "
                         f"ON {Session._meta.table_name} (key_pk, ended_at)")


def _scopes_for_every_key_v4(database):
    # Before scopes meant anything, a key stored no scope and could reach every
    # route; now a key needs one. Such keys become "generate" (run workflows),
    # and so lose the operator routes: the log says so, once, here.
    table = ApiKey._meta.table_name
    cursor = database.execute_sql(f"UPDATE {table} SET scopes = 'generate' WHERE scopes IS NULL OR scopes = ''")
    if cursor.rowcount:
        log.warning("[api-auth] %d key(s) made before scopes now have the 'generate' scope: they run workflows "
                    "and fetch results, and no longer reach the operator's routes (ComfyUI-Manager, /internal, "
                    "/free, shared settings). Give a key the 'admin' scope where it must (README: Upgrading).",
                    cursor.rowcount)


V5_KEY_COLUMNS = ("expires_at", "allowed_ips", "generation", "previous_key_hash", "previous_valid_until")


def _key_lifecycle_v5(database):
    # Expiry, IP allowlist and rotation (README: Key lifecycle). Every existing
    # key gets the defaults: never expires, from anywhere, generation 0 (so do
    # the sessions opened with it). NOT NULL columns are added with their
    # default in one statement (SQLite and PostgreSQL both allow it; the
    # migrator would rebuild SQLite's table to add the constraint after).
    keys, sessions = ApiKey._meta.table_name, Session._meta.table_name
    integer = "BIGINT" if isinstance(database, peewee.PostgresqlDatabase) else "INTEGER"
    for table, column, ddl in ((keys, "allowed_ips", "TEXT NOT NULL DEFAULT ''"),
                               (keys, "generation", f"{integer} NOT NULL DEFAULT 0"),
                               (sessions, "key_generation", f"{integer} NOT NULL DEFAULT 0")):
        database.execute_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
    migrator = SchemaMigrator.from_database(database)
    apply_operations(*(migrator.add_column(keys, name, ApiKey._meta.fields[name])
                       for name in ("expires_at", "previous_key_hash", "previous_valid_until")))


def _file_owners_v6(database):
    # Which key produced or uploaded which file, so a restart does not open
    # a key's outputs and uploads to every other key.
    database.create_tables([FileOwner])


MIGRATIONS = [
    (1, _create_v1),
    (2, _jobs_limits_and_audit_v2),
    (3, _login_attempts_and_session_index_v3),
    (4, _scopes_for_every_key_v4),
    (5, _key_lifecycle_v5),
    (6, _file_owners_v6),
]
LATEST = MIGRATIONS[-1][0]


def _meta_table_exists(database) -> bool:
    if isinstance(database, peewee.PostgresqlDatabase):
        # to_regclass follows the search_path; table_exists() looks in "public" only.
        cursor = database.execute_sql("SELECT to_regclass(%s) IS NOT NULL", (MetaValue._meta.table_name,))
        return bool(cursor.fetchone()[0])
    return database.table_exists(MetaValue._meta.table_name)


def current_version(database) -> int:
    if not _meta_table_exists(database):
        return 0
    row = MetaValue.get_or_none(MetaValue.name == SCHEMA_VERSION_NAME)
    return row.number if row else 0


def migrate(database) -> tuple[int, int]:
    """Bring the schema up to date. Returns (version before, version after)."""
    # IMMEDIATE on SQLite: two processes starting together do not both decide
    # to run the same step.
    with write_transaction(database):
        if isinstance(database, peewee.PostgresqlDatabase):
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_ID,))
        before = current_version(database)
        if before > LATEST:
            raise SchemaTooNew(
                f"the database schema is version {before}, but this version of the "
                f"package knows only up to {LATEST}; upgrade the package or point "
                "COMFYUI_API_AUTH_DB at another database")
        for version, step in MIGRATIONS:
            if version > before:
                step(database)
        if before < LATEST:
            (MetaValue.insert(name=SCHEMA_VERSION_NAME, number=LATEST)
             .on_conflict(conflict_target=[MetaValue.name], update={MetaValue.number: LATEST})
             .execute())
    return before, LATEST


def ensure_ready(database):
    database.bind(ALL_MODELS)
    return migrate(database)
