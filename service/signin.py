"""Signing in: sessions, the admin password, the one-time setup code, and the
limits on attempts (per address, shared through the database, and on bcrypt
checks in flight). The session index itself is the KeyCache's."""

import asyncio
import logging
import secrets

from ..core import passwords, setup_code
from ..core.hashing import secret_hex
from ..core.config import Settings
from ..core.throttle import AttemptThrottle, WorkSlots
from ..storage import repository

log = logging.getLogger("comfyui_api_auth")


token_hash = secret_hex  # what the session index holds: the SHA-256 of the token, in hex


class SignIns:
    def __init__(self, db, keys, clock):
        self.db = db      # the DatabaseThread
        self.keys = keys  # the KeyCache: sessions, and whether an admin exists
        self.clock = clock
        self.settings = Settings()
        self.login_throttle = AttemptThrottle(self.settings.login_attempts, self.settings.login_window)
        self.password_checks = WorkSlots(self.settings.login_concurrency)  # bcrypt runs at once in this process
        self._setup_code: bytes | None = None  # digest of the one-time setup code, while no admin exists

    def configure(self, settings: Settings):
        self.settings = settings
        self.login_throttle = AttemptThrottle(settings.login_attempts, settings.login_window)
        self.password_checks = WorkSlots(settings.login_concurrency)

    # ---- sessions ------------------------------------------------------------------------

    async def open_session(self, kind: str, key_pk: int | None, client: str, attempt: int | None = None,
                           key_generation: int = 0) -> str:
        """A new session's token. The owner's oldest sessions beyond its bound
        end; the sign-in ``attempt`` that opened it no longer counts.
        ``key_generation``: which of the key's secrets signed in (see rotation)."""
        token = secrets.token_urlsafe(32)  # 256 bits
        bound = self.settings.max_admin_sessions if key_pk is None else self.settings.max_sessions_per_key
        session, ended = await self.db.run(
            repository.create_session, token_hash=token_hash(token), kind=kind, key_pk=key_pk,
            client=client, now=self.clock(), ttl=self.settings.session_ttl, max_live=bound, attempt_id=attempt,
            key_generation=key_generation)
        self.keys.remember_session(session)
        self.keys.drop_sessions(ended)
        return token

    async def end_session(self, token: str):
        hashed = token_hash(token)
        self.keys.sessions.pop(hashed, None)  # refused from now on, before the write lands
        self.keys.access_changed()
        await self.db.run(repository.end_session, hashed, self.clock())
        # A refresh that read the sessions before this write resumed before us and may
        # have put this one back (the database thread runs calls in order).
        self.keys.sessions.pop(hashed, None)

    async def end_all_sessions(self, keep_token: str | None = None) -> int:
        """Sign out everywhere: end every session (admin and key), except the
        one of ``keep_token`` if given. Other processes drop them on their next
        refresh. Returns how many ended."""
        keep = token_hash(keep_token) if keep_token else None
        ended = await self.db.run(repository.end_sessions, self.clock(), None, keep)
        self.keys.drop_sessions(ended)
        return len(ended)

    # ---- sign-in attempts ----------------------------------------------------------------

    async def count_sign_in_attempt(self, client: str) -> tuple[int | None, int]:
        """Count an attempt from ``client`` in the database, where every process
        sharing it sees it: (attempt id, 0), or (None, seconds to wait) when the
        address has used up its attempts there (then refused here without asking
        again until then)."""
        now = self.clock()
        attempt, wait = await self.db.run(repository.reserve_login_attempt, client[:64], now,
                                          self.settings.login_window, self.settings.login_attempts)
        if attempt is None:
            self.login_throttle.block(client, now + wait)
        return attempt, wait

    async def uncount_sign_in_attempt(self, attempt: int):
        await self.db.run(repository.refund_login_attempt, attempt)

    # ---- the admin password --------------------------------------------------------------

    async def check_admin_password(self, password: str) -> bool:
        stored = await self.db.run(repository.get_admin_password_hash)
        loop = asyncio.get_running_loop()
        # bcrypt takes ~0.2 s: on a worker thread, not the loop, not the db thread.
        return await loop.run_in_executor(None, passwords.check_password, password, stored)

    async def set_admin_password(self, password: str, keep_token: str | None = None) -> int:
        """Store a new admin password. Every session opened with the old one
        ends, except the one of ``keep_token`` (whoever changed it). Returns how
        many ended."""
        loop = asyncio.get_running_loop()
        hashed = await loop.run_in_executor(None, passwords.hash_password, password)
        keep = token_hash(keep_token) if keep_token else None
        ended = await self.db.run(repository.set_admin_password_hash, hashed, self.clock(), keep)
        self.keys.drop_sessions(ended)
        self.keys.admin_password_set = True
        return len(ended)

    def apply_env_password(self, database, password: str):
        """At start, on the db thread: COMFYUI_API_AUTH_ADMIN_PASSWORD becomes the password."""
        current = repository.get_admin_password_hash(database)
        if not passwords.check_password(password, current):
            ended = repository.set_admin_password_hash(database, passwords.hash_password(password), self.clock())
            self.keys.drop_sessions(ended)
            repository.write_audit(database, [{"at": self.clock(), "actor": "config", "action": "password_set",
                                               "target": "admin",
                                               "detail": {"source": "environment", "sessions_ended": len(ended)}}])
            log.info("[api-auth] admin password set from COMFYUI_API_AUTH_ADMIN_PASSWORD")

    @property
    def admin_password_managed(self) -> bool:
        """COMFYUI_API_AUTH_ADMIN_PASSWORD is set: it is the password, changed only there."""
        return self.settings.admin_password is not None

    # ---- the one-time setup code -----------------------------------------------------------

    def new_setup_code(self) -> str | None:
        """A fresh one-time setup code to print, or None when an admin exists already."""
        if self.keys.admin_exists:
            self._setup_code = None
            return None
        shown, self._setup_code = setup_code.new_code()
        return shown

    @property
    def setup_available(self) -> bool:
        return self._setup_code is not None and not self.keys.admin_exists

    def take_setup_code(self, typed: str) -> bytes | None:
        """The code's digest, once, for the right code while no admin exists (the
        code is spent then); None otherwise. No await in here: two requests with
        the right code cannot both pass."""
        if not self.setup_available or not setup_code.matches(typed, self._setup_code):
            return None
        spent, self._setup_code = self._setup_code, None
        return spent

    def give_back_setup_code(self, spent: bytes):
        """Setting the password failed (database down): the code stays usable."""
        if self._setup_code is None and not self.keys.admin_exists:
            self._setup_code = spent
