"""Reading and writing keys, sessions, usage and rate windows.

Every function is synchronous and short; the runtime calls them on its
single database thread. Writes that others must see (keys, sessions) bump
one shared revision number in the same transaction, so every process can
pick up exactly what changed since its last look.
"""

import hashlib
import json
import zlib

import peewee

from ..core.principals import KeyRecord
from .database import write_transaction
from .models import ApiKey, AuditEvent, FileOwner, Job, LoginAttempt, MetaValue, RateWindow, Session, UsageHourly

ADMIN_PASSWORD_NAME = "admin_password_hash"
LOGIN_LOCK_CLASS = 0x4C474E41  # "LGNA": PostgreSQL advisory locks on sign-in attempts, per client


def _next_revision() -> int:
    # UPDATE takes the row lock, so revisions commit in the order they are
    # handed out (PostgreSQL) or under SQLite's single writer.
    MetaValue.update(number=MetaValue.number + 1).where(MetaValue.name == "revision").execute()
    return MetaValue.get(MetaValue.name == "revision").number


def to_record(row: ApiKey) -> KeyRecord:
    return KeyRecord(
        pk=row.id,
        key_id=row.key_id,
        key_hash=row.key_hash,
        name=row.name,
        prefix=row.prefix,
        rate_limit=row.rate_limit,
        is_active=bool(row.is_active),
        metadata=json.loads(row.metadata or "{}"),
        scopes=tuple(scope for scope in (row.scopes or "").split(",") if scope),
        created_at=row.created_at,
        last_used=row.last_used,
        prompts_per_hour=row.prompts_per_hour,
        max_waiting=row.max_waiting,
        expires_at=row.expires_at,
        allowed_ips=split_list(row.allowed_ips),
        generation=row.generation or 0,
        previous_key_hash=row.previous_key_hash,
        previous_valid_until=row.previous_valid_until,
    )


def split_list(text) -> tuple:
    """A comma-separated column (scopes, allowed_ips) as a tuple; "" or null -> ()."""
    return tuple(item for item in (text or "").split(",") if item)


# ---- keys -------------------------------------------------------------------

def create_key(database, *, key_id, key_hash, prefix, name, rate_limit, metadata, scopes, now,
               job_limits=None, expires_at=None, allowed_ips=()) -> KeyRecord:
    job_limits = job_limits or {}
    with write_transaction(database):
        row = ApiKey.create(
            key_id=key_id, key_hash=key_hash, prefix=prefix, name=name,
            rate_limit=rate_limit, is_active=True,
            prompts_per_hour=job_limits.get("prompts_per_hour"), max_waiting=job_limits.get("max_waiting"),
            metadata=json.dumps(metadata, ensure_ascii=False),
            scopes=",".join(scopes), created_at=now, updated_at=now,
            expires_at=expires_at, allowed_ips=",".join(allowed_ips),
            revision=_next_revision())
    return to_record(row)


def _live_key(key_id: str):
    return ApiKey.get_or_none((ApiKey.key_id == key_id) & ApiKey.deleted_at.is_null())


def get_key(database, key_id: str) -> KeyRecord | None:
    row = _live_key(key_id)
    return to_record(row) if row else None


def list_keys(database) -> list[KeyRecord]:
    query = ApiKey.select().where(ApiKey.deleted_at.is_null()).order_by(ApiKey.created_at, ApiKey.id)
    return [to_record(row) for row in query]


# The columns of ``live_key_rows``, in order.
KEY_ROW_COLUMNS = (ApiKey.id, ApiKey.key_hash, ApiKey.key_id, ApiKey.name, ApiKey.prefix, ApiKey.rate_limit,
                   ApiKey.is_active, ApiKey.metadata, ApiKey.scopes, ApiKey.created_at, ApiKey.last_used,
                   ApiKey.prompts_per_hour, ApiKey.max_waiting, ApiKey.expires_at, ApiKey.allowed_ips,
                   ApiKey.generation, ApiKey.previous_key_hash, ApiKey.previous_valid_until)


def live_key_rows(database):
    """Every live key as a plain tuple of ``KEY_ROW_COLUMNS``, from the driver's
    cursor: the key cache packs them at start without a model instance, a
    per-column conversion or a ``KeyRecord`` per key (metadata stays the
    stored JSON text; ``is_active`` may come as 0/1)."""
    return database.execute(ApiKey.select(*KEY_ROW_COLUMNS).where(ApiKey.deleted_at.is_null()))


def update_key(database, key_id: str, changes: dict, now: float) -> KeyRecord | None:
    columns = {}
    for field_name, value in changes.items():
        if field_name == "job_limits":
            columns[ApiKey.prompts_per_hour] = value.get("prompts_per_hour")
            columns[ApiKey.max_waiting] = value.get("max_waiting")
            continue
        if field_name == "metadata":
            value = json.dumps(value, ensure_ascii=False)
        elif field_name in ("scopes", "allowed_ips"):
            value = ",".join(value)
        columns[getattr(ApiKey, field_name)] = value
    with write_transaction(database):
        row = _live_key(key_id)
        if row is None:
            return None
        columns[ApiKey.updated_at] = now
        columns[ApiKey.revision] = _next_revision()
        ApiKey.update(columns).where(ApiKey.id == row.id).execute()
        row = ApiKey.get_by_id(row.id)
    return to_record(row)


def delete_key(database, key_id: str, now: float) -> KeyRecord | None:
    """Revoke for good. The row stays as a tombstone so usage keeps its owner
    and other processes learn of the deletion from the revision feed."""
    with write_transaction(database):
        row = _live_key(key_id)
        if row is None:
            return None
        ApiKey.update(is_active=False, deleted_at=now, updated_at=now,
                      revision=_next_revision()).where(ApiKey.id == row.id).execute()
        # Sessions opened with the key end with it.
        Session.update(ended_at=now, revision=_next_revision()).where(
            (Session.key_pk == row.id) & Session.ended_at.is_null()).execute()
    return to_record(row)


def rotate_key(database, key_id: str, key_hash: str, prefix: str, grace_seconds: int,
               now: float) -> tuple[KeyRecord | None, list[str]]:
    """Give a key a new secret (its id, settings, usage and jobs stay). The
    secret it had keeps working for ``grace_seconds`` (0: ends now); an older
    one, still in the grace of an earlier rotation, ends now. Sessions opened
    with a secret that ends now end too. Returns (the key, token hashes of the
    sessions ended); (None, []) if there is no such key."""
    with write_transaction(database):
        # The revision first: its row lock serialises concurrent rotations of
        # every process, so the second reads what the first wrote.
        revision = _next_revision()
        row = _live_key(key_id)
        if row is None:
            return None, []
        generation = (row.generation or 0) + 1
        keep_previous = grace_seconds > 0
        ApiKey.update(key_hash=key_hash, prefix=prefix, generation=generation,
                      previous_key_hash=row.key_hash if keep_previous else None,
                      previous_valid_until=now + grace_seconds if keep_previous else None,
                      updated_at=now, revision=revision).where(ApiKey.id == row.id).execute()
        oldest_kept = generation - 1 if keep_previous else generation
        ended = Session.update(ended_at=now, revision=revision).where(
            (Session.key_pk == row.id) & Session.ended_at.is_null()
            & (Session.key_generation < oldest_kept)).execute()
        ended = _ended_with(revision) if ended else []
        return to_record(ApiKey.get_by_id(row.id)), ended


def current_revision(database) -> int:
    return MetaValue.get(MetaValue.name == "revision").number


def key_changes(database, since_revision: int):
    """Keys changed after a revision: (live records, deleted pks)."""
    live, deleted = [], []
    for row in ApiKey.select().where(ApiKey.revision > since_revision):
        if row.deleted_at is None:
            live.append(to_record(row))
        else:
            deleted.append(row.id)
    return live, deleted


# ---- sessions -----------------------------------------------------------------

def create_session(database, *, token_hash, kind, key_pk, client, now, ttl, max_live,
                   attempt_id=None, key_generation=0) -> tuple[dict, list[str]]:
    """Open a session; the oldest live sessions of the same owner (the key, or
    the admin password) beyond ``max_live`` end, and the sign-in attempt
    ``attempt_id`` is given back, in the same transaction (one commit).
    Returns (the session, token hashes of the sessions it ended)."""
    with write_transaction(database):
        # The revision first: its row lock serialises concurrent sign-ins of
        # every process, so the count below sees them all.
        revision = _next_revision()
        row = Session.create(token_hash=token_hash, kind=kind, key_pk=key_pk, client=client[:64],
                             created_at=now, expires_at=now + ttl, revision=revision,
                             key_generation=key_generation)
        owner = Session.key_pk.is_null() if key_pk is None else Session.key_pk == key_pk
        beyond = (Session.select(Session.id).where(owner & (Session.kind == kind) & _live_session(now))
                  .order_by(Session.created_at.desc(), Session.id.desc()).offset(max_live))
        ended = Session.update(ended_at=now, revision=revision).where(Session.id.in_(beyond)).execute()
        ended = _ended_with(revision) if ended else []
        if attempt_id is not None:
            refund_login_attempt(database, attempt_id)
    return session_dict(row), ended


def _ended_with(revision: int) -> list[str]:
    """Token hashes of the sessions a write numbered ``revision`` ended."""
    query = Session.select(Session.token_hash).where((Session.revision == revision) & Session.ended_at.is_null(False))
    return [row.token_hash for row in query]


def _live_session(now: float):
    return Session.ended_at.is_null() & (Session.expires_at > now)


def end_session(database, token_hash: str, now: float) -> bool:
    with write_transaction(database):
        count = Session.update(ended_at=now, revision=_next_revision()).where(
            (Session.token_hash == token_hash) & Session.ended_at.is_null()).execute()
    return bool(count)


def end_sessions(database, now: float, kind: str | None = None, keep: str | None = None) -> list[str]:
    """End every live session (only those of ``kind`` if given) except the one
    whose token hash is ``keep``. Returns the token hashes ended."""
    with write_transaction(database):
        return _end_sessions(now, kind, keep)


def _end_sessions(now, kind, keep) -> list[str]:
    which = _live_session(now)
    if kind is not None:
        which &= Session.kind == kind
    if keep is not None:
        which &= Session.token_hash != keep
    # One new revision: every process drops them on its next refresh.
    revision = _next_revision()
    ended = Session.update(ended_at=now, revision=revision).where(which).execute()
    return _ended_with(revision) if ended else []


def session_dict(row: Session) -> dict:
    return {"token_hash": row.token_hash, "kind": row.kind, "key_pk": row.key_pk,
            "expires_at": row.expires_at, "ended": row.ended_at is not None,
            "key_generation": row.key_generation or 0}


def session_changes(database, since_revision: int, now: float) -> list[dict]:
    query = Session.select().where((Session.revision > since_revision) & (Session.expires_at > now))
    return [session_dict(row) for row in query]


def purge_sessions(database, now: float) -> int:
    return Session.delete().where((Session.expires_at <= now) | (Session.ended_at < now - 86400)).execute()


# ---- named values ---------------------------------------------------------------------

def get_meta_text(database, name: str):
    row = MetaValue.get_or_none(MetaValue.name == name)
    return row.text if row else None


def set_meta_text(database, name: str, text: str):
    (MetaValue.insert(name=name, text=text)
     .on_conflict(conflict_target=[MetaValue.name], update={MetaValue.text: text}).execute())


# ---- admin password ---------------------------------------------------------------

def get_admin_password_hash(database) -> bytes | None:
    row = MetaValue.get_or_none(MetaValue.name == ADMIN_PASSWORD_NAME)
    return row.text.encode("ascii") if row and row.text else None


def set_admin_password_hash(database, password_hash: bytes, now: float, keep: str | None = None) -> list[str]:
    """Store a new admin password hash; every session opened with the old
    password ends with it, except ``keep`` (the token hash of the session that
    changed it, if any). Returns the token hashes ended."""
    with write_transaction(database):
        (MetaValue.insert(name=ADMIN_PASSWORD_NAME, text=password_hash.decode("ascii"))
         .on_conflict(conflict_target=[MetaValue.name], update={MetaValue.text: password_hash.decode("ascii")})
         .execute())
        _next_revision()
        return _end_sessions(now, "admin", keep)


# ---- sign-in attempts, shared by the processes ---------------------------------------------

def reserve_login_attempt(database, client: str, now: float, window: float, limit: int) -> tuple[int | None, int]:
    """Count a sign-in attempt from ``client`` unless ``limit`` were counted in
    the last ``window`` seconds (by any process). Returns (attempt id, 0), or
    (None, seconds until the oldest counted attempt leaves the window)."""
    with write_transaction(database):
        if isinstance(database, peewee.PostgresqlDatabase):
            # SQLite's IMMEDIATE transaction already admits one writer at a time.
            database.execute_sql("SELECT pg_advisory_xact_lock(%s, %s)",
                                 (LOGIN_LOCK_CLASS, zlib.crc32(client.encode()) - 2**31))
        recent = [row.at for row in LoginAttempt.select(LoginAttempt.at)
                  .where((LoginAttempt.client == client) & (LoginAttempt.at > now - window))
                  .order_by(LoginAttempt.at).limit(limit)]
        if len(recent) >= limit:
            return None, max(1, int(recent[0] + window - now) + 1)
        row = LoginAttempt.create(client=client, at=now)
    return row.id, 0


def refund_login_attempt(database, attempt_id: int):
    """The attempt succeeded: it does not count against the address."""
    LoginAttempt.delete().where(LoginAttempt.id == attempt_id).execute()


def purge_login_attempts(database, before: float) -> int:
    return LoginAttempt.delete().where(LoginAttempt.at < before).execute()


# ---- usage and rate windows -----------------------------------------------------------

def write_usage(database, cells: dict, last_used: dict):
    """Add a batch of counters; one transaction, one upsert per cell."""
    with write_transaction(database):
        for (key_pk, hour, route, method), (ok, failed, duration) in cells.items():
            (UsageHourly.insert(key_pk=key_pk, hour=hour, route=route[:200], method=method[:16],
                                successful=ok, failed=failed, duration=duration)
             .on_conflict(
                 conflict_target=[UsageHourly.key_pk, UsageHourly.hour, UsageHourly.route, UsageHourly.method],
                 update={UsageHourly.successful: UsageHourly.successful + ok,
                         UsageHourly.failed: UsageHourly.failed + failed,
                         UsageHourly.duration: UsageHourly.duration + duration})
             .execute())
        for key_pk, when in last_used.items():
            # Only forward: never let a late batch move last_used back.
            ApiKey.update(last_used=when).where(
                (ApiKey.id == key_pk) & (ApiKey.last_used.is_null() | (ApiKey.last_used < when))).execute()


def write_rate_counts(database, pending: dict):
    with write_transaction(database):
        for (key_pk, window), delta in pending.items():
            (RateWindow.insert(key_pk=key_pk, window=window, used=delta)
             .on_conflict(conflict_target=[RateWindow.key_pk, RateWindow.window],
                          update={RateWindow.used: RateWindow.used + delta})
             .execute())


def claim_quota(database, key_pk: int, window: int, want: int, limit: int) -> tuple[int, int]:
    """Take up to ``want`` requests of a key's hourly quota for this process.

    Returns (granted, claimed so far by all processes). The row is locked for
    the transaction, so concurrent claims never hand out more than ``limit``.
    """
    with write_transaction(database):
        RateWindow.insert(key_pk=key_pk, window=window, used=0).on_conflict_ignore().execute()
        query = RateWindow.select().where((RateWindow.key_pk == key_pk) & (RateWindow.window == window))
        if not isinstance(database, peewee.SqliteDatabase):
            query = query.for_update()
        row = query.get()
        granted = max(0, min(want, limit - row.used))
        if granted:
            RateWindow.update(used=RateWindow.used + granted).where(RateWindow.id == row.id).execute()
    return granted, row.used + granted


def release_quota(database, unspent: dict):
    """Give back quota a process claimed but did not spend (graceful shutdown)."""
    with write_transaction(database):
        for (key_pk, window), count in unspent.items():
            RateWindow.update(used=RateWindow.used - count).where(
                (RateWindow.key_pk == key_pk) & (RateWindow.window == window) & (RateWindow.used >= count)).execute()


def rate_counts(database, window: int, key_pks=None) -> dict:
    """{key pk: requests charged in ``window``}: with shared limits what every
    process claimed and did not give back, otherwise what every process spent
    and flushed. ``key_pks`` narrows it to some keys."""
    condition = RateWindow.window == window
    if key_pks is not None:
        condition &= RateWindow.key_pk.in_(list(key_pks))
    return {row.key_pk: row.used for row in RateWindow.select().where(condition)}


def usage_rows(database, key_pk: int, since_hour: int) -> list[tuple]:
    query = (UsageHourly
             .select(UsageHourly.hour, UsageHourly.route, UsageHourly.method,
                     UsageHourly.successful, UsageHourly.failed, UsageHourly.duration)
             .where((UsageHourly.key_pk == key_pk) & (UsageHourly.hour >= since_hour))
             .tuples())
    return list(query)



def purge_usage(database, before_hour: int) -> int:
    with write_transaction(database):
        removed = UsageHourly.delete().where(UsageHourly.hour < before_hour).execute()
        RateWindow.delete().where(RateWindow.window < before_hour).execute()
    return removed


# ---- jobs -------------------------------------------------------------------------------------

def write_jobs(database, rows: list[dict]):
    with write_transaction(database):
        for row in rows:
            (Job.insert(prompt_id=row["prompt_id"][:100], key_pk=row["key_pk"], principal=row["principal"],
                        queued_at=row["queued_at"], outcome=row["outcome"],
                        finished_at=row.get("finished_at"), execution_seconds=row.get("execution_seconds"))
             .on_conflict(conflict_target=[Job.prompt_id],
                          update={Job.outcome: row["outcome"], Job.finished_at: row.get("finished_at"),
                                  Job.execution_seconds: row.get("execution_seconds")})
             .execute())


def prompts_queued_since(database, since: float) -> dict:
    query = (Job.select(Job.key_pk, peewee.fn.COUNT(Job.id)).where(
        (Job.queued_at >= since) & Job.key_pk.is_null(False)).group_by(Job.key_pk).tuples())
    return dict(query)


def job_rows(database, key_pk: int, since: float) -> dict:
    query = (Job.select(Job.prompt_id, Job.outcome, Job.execution_seconds)
             .where((Job.key_pk == key_pk) & (Job.queued_at >= since)).tuples())
    return {prompt_id: (outcome, seconds) for prompt_id, outcome, seconds in query}


# ---- audit ------------------------------------------------------------------------------------

def write_audit(database, events: list[dict]):
    with write_transaction(database):
        for event in events:
            AuditEvent.create(at=event["at"], actor=event["actor"][:120], client=event.get("client", "")[:64],
                              action=event["action"][:32], target=event.get("target", "")[:120],
                              detail=json.dumps(event.get("detail", {}), ensure_ascii=False))


def purge_audit(database, before: float) -> int:
    return AuditEvent.delete().where(AuditEvent.at < before).execute()


def audit_events(database, limit: int, before_id: int | None = None) -> list[dict]:
    query = AuditEvent.select().order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return [{"id": row.id, "at": row.at, "actor": row.actor, "client": row.client, "action": row.action,
             "target": row.target, "detail": json.loads(row.detail or "{}")} for row in query]


# ---- file owners ------------------------------------------------------------------------------
# A path is stored JSON-escaped (ASCII): a file name may hold what a database
# refuses in text (a NUL, a lone surrogate from an undecodable name).

def _stored_path(path: str) -> str:
    return json.dumps(path)


def file_owner_rows(database) -> tuple[list[tuple], int]:
    """Every (kind, path, key pk) recorded, and the highest row id."""
    rows, last_id = [], 0
    for row_id, kind, path, key_pk in FileOwner.select(FileOwner.id, FileOwner.kind, FileOwner.path,
                                                       FileOwner.key_pk).tuples():
        rows.append((kind, json.loads(path), key_pk))
        last_id = max(last_id, row_id)
    return rows, last_id


def file_owners_changed_since(database, after_id: int) -> tuple[dict, int]:
    """The files that got an owner row after ``after_id`` (another process wrote
    them), each with all its owners now: {(kind, path): set of key pks}, and the
    highest row id."""
    new = list(FileOwner.select(FileOwner.id, FileOwner.kind, FileOwner.path_hash)
               .where(FileOwner.id > after_id).tuples())
    if not new:
        return {}, after_id
    last_id = max(row_id for row_id, _, _ in new)
    changed: dict = {}
    wanted = {(kind, path_hash) for _, kind, path_hash in new}
    hashes = sorted({path_hash for _, _, path_hash in new})
    for start in range(0, len(hashes), 500):
        query = (FileOwner.select(FileOwner.kind, FileOwner.path, FileOwner.path_hash, FileOwner.key_pk)
                 .where(FileOwner.path_hash.in_(hashes[start:start + 500])).tuples())
        for kind, path, path_hash, key_pk in query:
            if (kind, path_hash) in wanted:
                changed.setdefault((kind, json.loads(path)), set()).add(key_pk)
    return changed, last_id


def write_file_owners(database, changes: list[tuple], now: float):
    """Apply changes in order: ("set", kind, path, key pk or None) makes the key
    the file's only owner (None: no owner); ("add", kind, path, key pk) adds one."""
    with write_transaction(database):
        for action, kind, path, key_pk in changes:
            stored = _stored_path(path)
            path_hash = hashlib.sha256(stored.encode("ascii")).hexdigest()
            if action == "set":
                FileOwner.delete().where((FileOwner.kind == kind) & (FileOwner.path_hash == path_hash)).execute()
            if key_pk is not None:
                (FileOwner.insert(kind=kind, path=stored, path_hash=path_hash, key_pk=key_pk, at=now)
                 .on_conflict_ignore().execute())
