"""What the request path knows of keys and sessions, kept in step with the database.

The middleware reads these dicts directly, one lookup per request; every
change goes through the methods here, which keep them consistent. Changes
made by other processes arrive through the revision feed (``refresh``).

Keys are held packed: one ``bytes`` per key (``pack_row``), indexed by the
key's SHA-256 digest, and a ``KeyRecord`` with its ``Principal`` is built only
when the key is first used (then kept in ``principals``). A hundred thousand
keys cost a few tens of megabytes this way, not a model instance, a record,
a metadata dict and a principal each.
"""

import json
import struct

from ..core.principals import KeyRecord, Principal, for_key
from ..storage import repository

VERIFIED_BEARERS_MAX = 4096  # bound of KeyCache.verified_bearers

# A packed key: pk, rate limit, created at, last used, prompts per hour, max waiting,
# expires at, generation, flags, then the byte lengths of key id, name, prefix,
# metadata (JSON text), scopes and allowed IPs (comma-separated), whose UTF-8 follows.
# (A rotated key's previous secret is not in here: see KeyCache.previous.)
_FIXED = struct.Struct("<qqddqqdqBHHHIIH")
_ACTIVE, _NO_LAST_USED, _NO_PROMPTS_PER_HOUR, _NO_MAX_WAITING, _NO_EXPIRY = 1, 2, 4, 8, 16


def pack_row(row) -> bytes:
    """A row of ``repository.live_key_rows`` (without its key hash and previous secret) as one bytes object."""
    (pk, key_id, name, prefix, rate_limit, is_active, metadata, scopes, created_at, last_used, per_hour, waiting,
     expires_at, allowed_ips, generation) = row
    flags = ((_ACTIVE if is_active else 0) | (_NO_LAST_USED if last_used is None else 0)
             | (_NO_PROMPTS_PER_HOUR if per_hour is None else 0) | (_NO_MAX_WAITING if waiting is None else 0)
             | (_NO_EXPIRY if expires_at is None else 0))
    texts = [text.encode("utf-8", "surrogatepass")
             for text in (key_id, name, prefix, metadata or "{}", scopes or "", allowed_ips or "")]
    return _FIXED.pack(pk, rate_limit, created_at, last_used or 0.0, per_hour or 0, waiting or 0, expires_at or 0.0,
                       generation or 0, flags, *map(len, texts)) + b"".join(texts)


def pack_record(record: KeyRecord) -> bytes:
    return pack_row((record.pk, record.key_id, record.name, record.prefix, record.rate_limit, record.is_active,
                     json.dumps(record.metadata, ensure_ascii=False), ",".join(record.scopes), record.created_at,
                     record.last_used, record.prompts_per_hour, record.max_waiting, record.expires_at,
                     ",".join(record.allowed_ips), record.generation))


def unpack_record(packed: bytes, digest: bytes, previous: tuple | None = None) -> KeyRecord:
    """``previous``: (digest, valid until) of the key's previous secret, if it has one."""
    (pk, rate_limit, created_at, last_used, per_hour, waiting, expires_at, generation, flags,
     *lengths) = _FIXED.unpack_from(packed)
    texts, start = [], _FIXED.size
    for length in lengths:
        texts.append(packed[start:start + length].decode("utf-8", "surrogatepass"))
        start += length
    key_id, name, prefix, metadata, scopes, allowed_ips = texts
    return KeyRecord(
        pk=pk, key_id=key_id, key_hash=digest.hex(), name=name, prefix=prefix, rate_limit=rate_limit,
        is_active=bool(flags & _ACTIVE), metadata=json.loads(metadata),
        scopes=tuple(scope for scope in scopes.split(",") if scope), created_at=created_at,
        last_used=None if flags & _NO_LAST_USED else last_used,
        prompts_per_hour=None if flags & _NO_PROMPTS_PER_HOUR else per_hour,
        max_waiting=None if flags & _NO_MAX_WAITING else waiting,
        expires_at=None if flags & _NO_EXPIRY else expires_at,
        allowed_ips=tuple(item for item in allowed_ips.split(",") if item), generation=generation,
        previous_key_hash=previous[0].hex() if previous else None,
        previous_valid_until=previous[1] if previous else None)


def is_admin_row(is_active, scopes: str) -> bool:
    return bool(is_active) and "admin" in (scopes or "").split(",")


class RecordsByPk:
    """pk -> ``KeyRecord`` of every key in the cache (``get``, ``[]``, ``in``, ``len``),
    built on first use like the principals."""

    __slots__ = ("_cache",)

    def __init__(self, cache):
        self._cache = cache

    def get(self, pk, default=None):
        digest = self._cache.digests.get(pk)
        return default if digest is None else self._cache.principal_of(digest).key

    def __getitem__(self, pk):
        return self._cache.principal_of(self._cache.digests[pk]).key

    def __contains__(self, pk):
        return pk in self._cache.digests

    def __len__(self):
        return len(self._cache.digests)


class KeyCache:
    def __init__(self, db):
        self.db = db  # the DatabaseThread
        # SHA-256 of the key (raw bytes, see keys.digest_key) -> the key packed (pack_row), every key
        self.packed: dict[bytes, bytes] = {}
        self.digests: dict[int, bytes] = {}  # key pk -> its digest, every key
        # A rotated key's previous secret, while its grace period lasts:
        # its digest -> (key pk, valid until), and key pk -> that digest.
        self.previous: dict[bytes, tuple[int, float]] = {}
        self.previous_of: dict[int, bytes] = {}
        # digest -> principal of the keys used since their last change, built on first use
        # (principal_of); the request path looks here first
        self.principals: dict[bytes, Principal] = {}
        self.by_pk = RecordsByPk(self)
        # "Bearer <key>" (and "Basic <user:key>") header values already verified -> principal, so a script's
        # repeat requests skip the SHA-256 (see the README's "Departures"). Only
        # keys that were valid and active go in, and only without an expiry, a
        # grace period or an allowlist (``Principal.restricted``: checked per
        # request); emptied on any key change, so a revocation applies at once,
        # and when it reaches VERIFIED_BEARERS_MAX.
        self.verified_bearers: dict[str, Principal] = {}
        # token hash -> (kind, key pk, expires at, generation of the key's secret that opened it)
        self.sessions: dict[str, tuple] = {}
        self.admin_keys: set[int] = set()  # pks of active keys with the admin scope
        self.admin_password_set = False
        self.last_used: dict[int, float] = {}  # key pk -> last use written to the database
        self.revision = 0
        # Called after this process ends or changes a key or a session, and on every
        # refresh tick (others' changes, sessions running out); install sets it to
        # close the WebSockets whose key or session no longer gets in.
        self.access_changed = lambda: None

    @property
    def admin_exists(self) -> bool:
        """An admin can sign in: an admin password is set or an active admin key exists."""
        return self.admin_password_set or bool(self.admin_keys)

    # ---- keys ------------------------------------------------------------------------

    def principal_of(self, digest: bytes) -> Principal | None:
        """The principal of the key with this digest (its secret, or its previous
        secret in a rotation's grace period), built now if it was not yet; None if
        no such key. Pure Python: the request path calls it when ``principals`` misses."""
        principal = self.principals.get(digest)
        if principal is None:
            packed = self.packed.get(digest)
            if packed is None:
                return self._previous_principal(digest)
            principal = self.principals[digest] = for_key(self._record(digest, packed), "header")
        return principal

    def _record(self, digest: bytes, packed: bytes) -> KeyRecord:
        pk = _FIXED.unpack_from(packed)[0]
        previous_digest = self.previous_of.get(pk)
        previous = (previous_digest, self.previous[previous_digest][1]) if previous_digest is not None else None
        return unpack_record(packed, digest, previous)

    def _previous_principal(self, digest: bytes) -> Principal | None:
        """The principal of a rotated key's previous secret: the key's own record,
        ending when the grace period does (``Principal.ends_at``)."""
        entry = self.previous.get(digest)
        if entry is None:
            return None
        current = self.principal_of(self.digests[entry[0]])
        principal = self.principals[digest] = for_key(current.key, "header", previous=True)
        return principal

    def key_principal(self, key_pk: int) -> Principal | None:
        """The principal of a key's current secret, by pk (sessions and sockets)."""
        digest = self.digests.get(key_pk)
        return None if digest is None else self.principal_of(digest)

    def remember(self, record: KeyRecord):
        self.verified_bearers.clear()
        old = self.digests.get(record.pk)
        was_built = old is not None and old in self.principals
        digest = self._store(record.pk, bytes.fromhex(record.key_hash), pack_record(record),
                             record.is_admin and record.is_active,
                             record.previous_key_hash, record.previous_valid_until)
        if was_built:  # else built on first use: listing many keys must not build them all
            self.principals[digest] = for_key(record, "header")
        if record.last_used and record.last_used > self.last_used.get(record.pk, 0.0):
            self.last_used[record.pk] = record.last_used

    def remember_row(self, row):
        """A row of ``repository.live_key_rows``, packed; its principal is built on first use."""
        pk, key_hash, rest = row[0], row[1], (row[0], *row[2:16])
        previous_hash, valid_until = row[16], row[17]
        self._store(pk, bytes.fromhex(key_hash), pack_row(rest), is_admin_row(row[6], row[8]),
                    previous_hash, valid_until)

    def _store(self, pk: int, digest: bytes, packed: bytes, is_admin: bool,
               previous_hash: str | None = None, valid_until: float | None = None) -> bytes:
        old = self.digests.get(pk)
        if old is not None:
            self.principals.pop(old, None)
            if old != digest:
                self.packed.pop(old, None)
        self._forget_previous(pk)
        if previous_hash is not None and valid_until is not None:
            previous = bytes.fromhex(previous_hash)
            self.previous[previous] = (pk, valid_until)
            self.previous_of[pk] = previous
        self.digests[pk] = digest
        self.packed[digest] = packed
        if is_admin:
            self.admin_keys.add(pk)
        else:
            self.admin_keys.discard(pk)
        return digest

    def _forget_previous(self, key_pk: int):
        previous = self.previous_of.pop(key_pk, None)
        if previous is not None:
            self.previous.pop(previous, None)
            self.principals.pop(previous, None)

    def drop_ended_previous(self, now: float):
        """Forget previous secrets whose grace period is over (they are refused
        by their principal's end already; this keeps the maps small)."""
        for key_pk, valid_until in list(self.previous.values()):
            if valid_until <= now:
                self._forget_previous(key_pk)

    def forget(self, key_pk: int):
        self.verified_bearers.clear()
        self._forget_previous(key_pk)
        digest = self.digests.pop(key_pk, None)
        self.admin_keys.discard(key_pk)
        if digest is not None:
            self.packed.pop(digest, None)
            self.principals.pop(digest, None)
        for hashed, session in list(self.sessions.items()):
            if session[1] == key_pk:
                del self.sessions[hashed]

    def last_used_of(self, record: KeyRecord, pending: dict):
        """When the key was last used; ``pending`` is ``usage.pending_last_used()``."""
        best = max(self.last_used.get(record.pk, 0.0), record.last_used or 0.0, pending.get(record.pk, 0.0))
        return best or None

    def note_flushed_last_used(self, last_used: dict):
        for key_pk, when in last_used.items():
            if when > self.last_used.get(key_pk, 0.0):
                self.last_used[key_pk] = when

    # ---- sessions ----------------------------------------------------------------------

    def remember_session(self, session: dict):
        if session["ended"]:
            self.sessions.pop(session["token_hash"], None)
        else:
            self.sessions[session["token_hash"]] = (session["kind"], session["key_pk"], session["expires_at"],
                                                    session.get("key_generation", 0))

    def drop_sessions(self, token_hashes: list[str]):
        for hashed in token_hashes:
            self.sessions.pop(hashed, None)
        if token_hashes:
            self.access_changed()  # their sockets close now, not at the next refresh

    # ---- in step with the database -------------------------------------------------------

    def load(self, database, now: float):
        """Everything, at start (on the database thread, before serving)."""
        self.revision = repository.current_revision(database)
        for row in repository.live_key_rows(database):
            self.remember_row(row)
        for session in repository.session_changes(database, 0, now):
            self.remember_session(session)

    async def refresh(self, now: float):
        """Pick up what other processes changed since our last look."""
        live, deleted, sessions, latest, password_set = await self.db.run(self._changes_since, self.revision, now)
        self.admin_password_set = password_set
        for record in live:
            self.remember(record)
        for key_pk in deleted:
            self.forget(key_pk)
        for session in sessions:
            self.remember_session(session)
        self.revision = max(self.revision, latest)
        self.drop_ended_previous(now)

    @staticmethod
    def _changes_since(database, revision, now):
        latest = repository.current_revision(database)
        live, deleted = repository.key_changes(database, revision)
        sessions = repository.session_changes(database, revision, now)
        password_set = repository.get_admin_password_hash(database) is not None
        return live, deleted, sessions, latest, password_set
