"""What the request path knows of keys and sessions, kept in step with the database.

The middleware reads these dicts directly, one lookup per request; every
change goes through the methods here, which keep them consistent. Changes
made by other processes arrive through the revision feed (``refresh``).
"""

from ..auth.principals import KeyRecord, Principal, for_key
from ..storage import repository

VERIFIED_BEARERS_MAX = 4096  # bound of KeyCache.verified_bearers


class KeyCache:
    def __init__(self, db):
        self.db = db  # the DatabaseThread
        self.by_pk: dict[int, KeyRecord] = {}
        # SHA-256 of the key (raw bytes, see keys.digest_key) -> its principal, built once per change
        self.principals: dict[bytes, Principal] = {}
        # "Bearer <key>" header values already verified -> principal, so a script's
        # repeat requests skip the SHA-256 (see the README's "Departures"). Only
        # keys that were valid and active go in; emptied on any key change, so a
        # revocation applies at once, and when it reaches VERIFIED_BEARERS_MAX.
        self.verified_bearers: dict[str, Principal] = {}
        self.sessions: dict[str, tuple] = {}  # token hash -> (kind, key pk, expires at)
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

    def remember(self, record: KeyRecord):
        self.verified_bearers.clear()
        old = self.by_pk.get(record.pk)
        if old is not None and old.key_hash != record.key_hash:
            self.principals.pop(bytes.fromhex(old.key_hash), None)
        self.by_pk[record.pk] = record
        self.principals[bytes.fromhex(record.key_hash)] = for_key(record, "header")
        if record.is_admin and record.is_active:
            self.admin_keys.add(record.pk)
        else:
            self.admin_keys.discard(record.pk)
        if record.last_used and record.last_used > self.last_used.get(record.pk, 0.0):
            self.last_used[record.pk] = record.last_used

    def forget(self, key_pk: int):
        self.verified_bearers.clear()
        record = self.by_pk.pop(key_pk, None)
        self.admin_keys.discard(key_pk)
        if record is not None:
            self.principals.pop(bytes.fromhex(record.key_hash), None)
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
            self.sessions[session["token_hash"]] = (session["kind"], session["key_pk"], session["expires_at"])

    def drop_sessions(self, token_hashes: list[str]):
        for hashed in token_hashes:
            self.sessions.pop(hashed, None)
        if token_hashes:
            self.access_changed()  # their sockets close now, not at the next refresh

    # ---- in step with the database -------------------------------------------------------

    def load(self, database, now: float):
        """Everything, at start (on the database thread, before serving)."""
        self.revision = repository.current_revision(database)
        for record in repository.list_keys(database):
            self.remember(record)
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

    @staticmethod
    def _changes_since(database, revision, now):
        latest = repository.current_revision(database)
        live, deleted = repository.key_changes(database, revision)
        sessions = repository.session_changes(database, revision, now)
        password_set = repository.get_admin_password_hash(database) is not None
        return live, deleted, sessions, latest, password_set
