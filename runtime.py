"""The running package: caches, limiter, usage, and the database thread.

This is where the pure rules (``auth``) meet storage (``storage``). The HTTP
layer (``server_routes``) reads the in-memory state directly on the request
path and awaits the coroutines here only for management calls.

All database work runs on one dedicated thread (a single-worker executor):
Peewee's connections are per thread, SQLite has one writer anyway, and the
event loop never waits on I/O or bcrypt.
"""

import asyncio
import atexit
import hashlib
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import peewee

from .auth import keys as key_format
from .auth import passwords
from .auth.config import ConfigError, Settings, load_settings
from .auth.jobs import INTERRUPTED, JobTracker, outcome_from_history, summarize_jobs
from .auth.policy import AccessPolicy
from .auth.principals import KeyRecord, Principal, for_key
from .auth.ratelimit import REFUSED, HourlyLimiter, SharedQuota, window_start
from .auth.throttle import AttemptThrottle, WorkSlots
from .auth.usage import UsageAggregator, summarize
from .storage import database as db_open
from .storage import migrations, repository

log = logging.getLogger("comfyui_api_auth")

DATA_DIR_NAME = "__api_auth"
VERIFIED_BEARERS_MAX = 4096  # bound of AuthRuntime.verified_bearers
ACTIVE = None  # the runtime installed into ComfyUI, for the nodes
DB_FILE_NAME = "auth.db"


class StorageUnavailable(RuntimeError):
    """A database call failed (disk full, read-only, unreachable): answer 503."""


def default_data_dir() -> str:
    override = os.environ.get("COMFYUI_API_AUTH_DATA_DIR")
    if override:
        return os.path.abspath(override)
    import folder_paths  # ComfyUI's module; present in ComfyUI and the stand-in

    if hasattr(folder_paths, "get_system_user_directory"):
        return folder_paths.get_system_user_directory("api_auth")
    return os.path.join(folder_paths.get_user_directory(), DATA_DIR_NAME)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class AuthRuntime:
    def __init__(self, data_dir: str, environ=None, clock=time.time):
        self.data_dir = data_dir
        self.clock = clock
        self.environ = os.environ if environ is None else environ
        self.settings = Settings()
        self._problem: str | None = None  # set => answer 503 and say why
        self._degraded: str | None = None  # writes failing => answer 503 until a flush succeeds
        self._ready = False
        self.refusing: str | None = "starting"  # why every request gets 503 now; None while serving
        self.database = None
        self.policy = AccessPolicy("enable")
        # hot-path state, read by the middleware
        self.keys_by_pk: dict[int, KeyRecord] = {}
        # SHA-256 of the key (raw bytes, see keys.digest_key) -> its principal, built once per change
        self.key_principals: dict[bytes, Principal] = {}
        # "Bearer <key>" header values already verified -> principal, so a script's
        # repeat requests skip the SHA-256 (see the README's "Departures"). Only
        # keys that were valid and active go in; emptied on any key change, so a
        # revocation applies at once, and when it reaches VERIFIED_BEARERS_MAX.
        self.verified_bearers: dict[str, Principal] = {}
        self.sessions: dict[str, tuple] = {}  # token hash -> (kind, key pk, expires at)
        self.limiter = HourlyLimiter()
        self.quota: SharedQuota | None = None  # set when several processes share the limits
        self._claims: dict[int, asyncio.Future] = {}
        self.quota_waiters: dict[int, int] = {}  # key pk -> requests waiting for a claim
        self.prompt_limiter = HourlyLimiter()  # queued workflows per hour, per key
        self.jobs = JobTracker()
        self.prompt_queue = lambda: None  # set by install: ComfyUI's PromptQueue, once it exists
        self._job_misses: dict[str, int] = {}
        self._audit: list[dict] = []
        self.usage = UsageAggregator()
        self.last_used: dict[int, float] = {}
        self.login_throttle = AttemptThrottle(10, 300)
        self.password_checks = WorkSlots(2)  # bcrypt runs at once in this process
        self.trusted_local_possible = False
        self.admin_password_set = False
        self._revision = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-auth-db")
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    # ---- serving or refusing ----------------------------------------------------
    # Three conditions, one answer the middleware reads with a single attribute.

    @property
    def problem(self) -> str | None:
        return self._problem

    @problem.setter
    def problem(self, reason: str | None):
        self._problem = reason
        self._update_refusing()

    @property
    def degraded(self) -> str | None:
        return self._degraded

    @degraded.setter
    def degraded(self, reason: str | None):
        self._degraded = reason
        self._update_refusing()

    @property
    def ready(self) -> bool:
        return self._ready

    @ready.setter
    def ready(self, ready: bool):
        self._ready = ready
        self._update_refusing()

    def _update_refusing(self):
        self.refusing = self._problem or self._degraded or (None if self._ready else "starting")

    # ---- start and stop --------------------------------------------------------

    def load_settings(self):
        try:
            config_path = os.path.join(self.data_dir, "config.json")
            self.settings = load_settings(self.environ, config_path)
        except ConfigError as error:
            self.fail(f"bad setting {error.variable}: {error}")
            return
        self.policy = AccessPolicy(self.settings.mode, self.settings.public_paths)
        self.login_throttle = AttemptThrottle(self.settings.login_attempts, self.settings.login_window)
        self.password_checks = WorkSlots(self.settings.login_concurrency)

    def fail(self, reason: str):
        self.problem = reason
        log.error("[api-auth] refusing to serve (every request gets 503): %s", reason)

    @property
    def db_url(self) -> str:
        return self.settings.db_url or db_open.sqlite_url(os.path.join(self.data_dir, DB_FILE_NAME))

    async def run_db(self, function, *args, **kwargs):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._on_db_thread, function, args, kwargs)
        except peewee.PeeweeException as error:
            log.error("[api-auth] database call %s failed: %s: %s", function.__name__, type(error).__name__, error)
            raise StorageUnavailable(f"{type(error).__name__}: {error}") from None

    def _on_db_thread(self, function, args, kwargs):
        try:
            return function(self.database, *args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError):
            # A dropped or broken connection: reconnect on the next call
            # instead of failing forever.
            try:
                self.database.close()
            except peewee.PeeweeException:
                pass
            raise

    async def start(self):
        if self.problem or not self.settings.enabled:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open_and_load)
        except migrations.SchemaTooNew as error:
            self.fail(str(error))
            return
        except Exception as error:  # noqa: BLE001 - any failure must fail closed
            self.fail(f"cannot open database {db_open.describe(self.db_url)}: {type(error).__name__}: {error}")
            return
        if self.settings.shared_limits == "on":
            self.quota = SharedQuota()
        self.ready = True
        self._tasks = [
            asyncio.ensure_future(self._every(self.settings.refresh_interval, self.refresh)),
            asyncio.ensure_future(self._every(self.settings.flush_interval, self.flush)),
            asyncio.ensure_future(self._every(3600, self.purge_old, first=0)),
            asyncio.ensure_future(self._every(1.0, self.poll_jobs)),
        ]
        atexit.register(self.flush_sync)

    def _open_and_load(self):
        self.database = db_open.open_database(self.db_url)
        before, after = migrations.ensure_ready(self.database)
        if before != after:
            log.info("[api-auth] database schema upgraded from version %s to %s", before, after)
        self._revision = repository.current_revision(self.database)
        for record in repository.list_keys(self.database):
            self._remember(record)
        now = self.clock()
        for session in repository.session_changes(self.database, 0, now):
            self._remember_session(session)
        for key_pk, used in repository.rate_counts(self.database, window_start(now)).items():
            self.limiter.seed(key_pk, window_start(now), used)
        for key_pk, queued in repository.prompts_queued_since(self.database, window_start(now)).items():
            self.prompt_limiter.seed(key_pk, window_start(now), queued)
        if self.settings.admin_password:
            self._apply_env_password(self.settings.admin_password)
        last_mode = repository.get_meta_text(self.database, "last_mode")
        if last_mode != self.settings.mode:
            repository.set_meta_text(self.database, "last_mode", self.settings.mode)
            repository.write_audit(self.database, [{"at": now, "actor": "config", "action": "mode_change",
                                                    "target": self.settings.mode, "detail": {"from": last_mode}}])
        self.admin_password_set = repository.get_admin_password_hash(self.database) is not None

    def _apply_env_password(self, password: str):
        current = repository.get_admin_password_hash(self.database)
        if not passwords.check_password(password, current):
            ended = repository.set_admin_password_hash(self.database, passwords.hash_password(password), self.clock())
            self._drop_sessions(ended)
            repository.write_audit(self.database, [{"at": self.clock(), "actor": "config", "action": "password_set",
                                                    "target": "admin",
                                                    "detail": {"source": "environment", "sessions_ended": len(ended)}}])
            log.info("[api-auth] admin password set from COMFYUI_API_AUTH_ADMIN_PASSWORD")

    async def stop(self):
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self.ready:
            await self.flush()
        self.flush_sync()

    def flush_sync(self):
        """Last flush, on the calling thread (ComfyUI's Ctrl-C skips on_shutdown)."""
        if self._closed or not self.ready:
            return
        self._closed = True
        try:
            self._write(self._drain(), release_quota=True)
        except Exception:  # noqa: BLE001
            log.exception("[api-auth] final usage flush failed")

    async def _every(self, seconds: float, job, first: float | None = None):
        delay = seconds if first is None else first
        while True:
            await asyncio.sleep(delay)
            delay = seconds
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - keep the loop alive, say what broke
                log.warning("[api-auth] background %s failed: %s: %s", job.__name__, type(error).__name__, error)

    # ---- limits shared across processes ------------------------------------------

    async def claim_quota(self, key: KeyRecord, now: float):
        """Claim the next batch of a key's hourly quota; concurrent callers share one claim,
        which asks for at least as many requests as are waiting (see ``quota_waiters``)."""
        claim = self._claims.get(key.pk)
        if claim is None:
            claim = asyncio.ensure_future(self._claim(key, now))
            self._claims[key.pk] = claim
            claim.add_done_callback(self._claim_done(key.pk))
        await asyncio.shield(claim)

    async def take_shared(self, key: KeyRecord, window: int, now: float) -> int:
        """Spend from this process's batch; claim another from the database when it runs out."""
        # Each claim grants at least one request or learns the hour is spent,
        # so this ends; the bound is a guard against a database gone strange.
        waiters = self.quota_waiters
        waiters[key.pk] = waiters.get(key.pk, 0) + 1  # claims ask for what is waiting, no more
        try:
            for _ in range(100):
                remaining = self.quota.take(key.pk, key.rate_limit, window)
                if remaining is not None:
                    return remaining
                await self.claim_quota(key, now)
            return REFUSED
        finally:
            waiters[key.pk] -= 1

    async def spend_request(self, key: KeyRecord, now: float) -> int:
        """Count one request against the key's hourly limit, as the middleware
        does for a request made with the key: the requests left, or REFUSED."""
        window = window_start(now)
        if self.quota is None:
            return self.limiter.take(key.pk, key.rate_limit, window)
        remaining = self.quota.take(key.pk, key.rate_limit, window)
        if remaining is None:
            remaining = await self.take_shared(key, window, now)
        if self.quota.running_low:
            self.prefetch_running_low(now)
        return remaining

    def prefetch_quota(self, key: KeyRecord, now: float):
        """Start claiming the next batch without waiting for it (no-op if a claim is under way)."""
        if key.pk not in self._claims:
            claim = asyncio.ensure_future(self._claim(key, now))
            self._claims[key.pk] = claim
            claim.add_done_callback(self._claim_done(key.pk))

    def prefetch_running_low(self, now: float):
        """Claim the next batch for each key whose batch ran low (see ``SharedQuota.running_low``)."""
        running_low = self.quota.running_low
        while running_low:
            record = self.keys_by_pk.get(running_low.pop())
            if record is not None:
                self.prefetch_quota(record, now)

    def _claim_done(self, key_pk):
        def done(claim):
            self._claims.pop(key_pk, None)
            if not claim.cancelled() and claim.exception() is not None:
                log.warning("[api-auth] claiming quota failed: %s", claim.exception())
        return done

    async def _claim(self, key: KeyRecord, now: float):
        await asyncio.sleep(0)  # let the requests of this burst line up first
        window = window_start(now)
        want = max(self.quota_waiters.get(key.pk, 0), self.quota.batch_size(key.pk, key.rate_limit, now))
        granted, claimed = await self.run_db(repository.claim_quota, key.pk, window, want, key.rate_limit)
        self.quota.grant(key.pk, window, granted, claimed)

    def requests_this_hour(self, key_pk: int, now: float) -> int:
        if self.quota is not None:
            return self.quota.used(key_pk, now)
        return self.limiter.used(key_pk, now)

    # ---- caches ------------------------------------------------------------------

    def _remember(self, record: KeyRecord):
        self.verified_bearers.clear()
        old = self.keys_by_pk.get(record.pk)
        if old is not None and old.key_hash != record.key_hash:
            self.key_principals.pop(bytes.fromhex(old.key_hash), None)
        self.keys_by_pk[record.pk] = record
        self.key_principals[bytes.fromhex(record.key_hash)] = for_key(record, "header")
        if record.last_used and record.last_used > self.last_used.get(record.pk, 0.0):
            self.last_used[record.pk] = record.last_used

    def _forget(self, key_pk: int):
        self.verified_bearers.clear()
        record = self.keys_by_pk.pop(key_pk, None)
        if record is not None:
            self.key_principals.pop(bytes.fromhex(record.key_hash), None)
        for hashed, session in list(self.sessions.items()):
            if session[1] == key_pk:
                del self.sessions[hashed]

    def _remember_session(self, session: dict):
        if session["ended"]:
            self.sessions.pop(session["token_hash"], None)
        else:
            self.sessions[session["token_hash"]] = (session["kind"], session["key_pk"], session["expires_at"])

    async def refresh(self):
        """Pick up what other processes changed since our last look."""
        revision = self._revision
        live, deleted, sessions, latest, password_set = await self.run_db(
            self._changes_since, revision, self.clock())
        self.admin_password_set = password_set
        for record in live:
            self._remember(record)
        for key_pk in deleted:
            self._forget(key_pk)
        for session in sessions:
            self._remember_session(session)
        self._revision = max(self._revision, latest)

    @staticmethod
    def _changes_since(database, revision, now):
        latest = repository.current_revision(database)
        live, deleted = repository.key_changes(database, revision)
        sessions = repository.session_changes(database, revision, now)
        password_set = repository.get_admin_password_hash(database) is not None
        return live, deleted, sessions, latest, password_set

    # ---- batches -------------------------------------------------------------------

    async def flush(self):
        # Drain on the loop (where counters are written), write on the db thread.
        batch = self._drain()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._on_db_thread,
                                                             self._write_batch, (batch,), {})
        except Exception as error:
            self._restore(batch)  # keep the counts for the next try rather than lose them
            if self.degraded is None:
                log.error("[api-auth] cannot write usage to the database (%s: %s): answering 503 to every "
                          "request until it works again", type(error).__name__, error)
            self.degraded = f"database writes fail: {type(error).__name__}"
            raise
        if self.degraded is not None:
            log.warning("[api-auth] database writes work again; serving requests")
            self.degraded = None

    def _drain(self):
        cells, last_used = self.usage.drain()
        self.prompt_limiter.drain()  # prompt counts are rebuilt from the jobs table at start
        audit, self._audit = self._audit, []
        return cells, last_used, self.limiter.drain(), self.jobs.drain(), audit

    def _restore(self, batch):
        cells, last_used, pending, jobs, audit = batch
        self.usage.restore(cells, last_used)
        self.limiter.restore(pending)
        self.jobs.restore(jobs)
        self._audit[:0] = audit

    def _write_batch(self, database, batch):
        self._write(batch)

    def _write(self, batch, release_quota=False):
        cells, last_used, pending, jobs, audit = batch
        if release_quota and self.quota is not None:
            unspent = self.quota.unspent(self.clock())
            if unspent:
                repository.release_quota(self.database, unspent)
        if cells or last_used:
            repository.write_usage(self.database, cells, last_used)
        if pending:
            repository.write_rate_counts(self.database, pending)
        if jobs:
            repository.write_jobs(self.database, jobs)
        if audit:
            repository.write_audit(self.database, audit)
        self.note_flushed_last_used(last_used)

    async def purge_old(self):
        """Drop what has outlived its retention (hourly, and once at start)."""
        now = self.clock()
        cutoff = int(now) // 3600 * 3600 - self.settings.usage_retention_days * 86400
        await self.run_db(repository.purge_usage, cutoff)
        await self.run_db(repository.purge_sessions, now)
        await self.run_db(repository.purge_audit, now - self.settings.audit_retention_days * 86400)
        await self.run_db(repository.purge_login_attempts, now - self.settings.login_window)

    # ---- keys ------------------------------------------------------------------------

    async def create_key(self, name, rate_limit, metadata, scopes, job_limits=None) -> tuple[KeyRecord, str]:
        plaintext = key_format.generate_key()
        record = await self.run_db(
            repository.create_key, key_id=key_format.generate_key_id(),
            key_hash=key_format.hash_key(plaintext), prefix=key_format.display_prefix(plaintext),
            name=name, rate_limit=rate_limit, metadata=metadata, scopes=scopes, now=self.clock(),
            job_limits=job_limits)
        self._remember(record)
        return record, plaintext

    async def list_keys(self) -> list[KeyRecord]:
        records = await self.run_db(repository.list_keys)
        for record in records:
            self._remember(record)
        return records

    async def get_key(self, key_id: str) -> KeyRecord | None:
        return await self.run_db(repository.get_key, key_id)

    async def update_key(self, key_id: str, changes: dict) -> KeyRecord | None:
        record = await self.run_db(repository.update_key, key_id, changes, self.clock())
        if record is not None:
            self._remember(record)
        return record

    async def delete_key(self, key_id: str) -> KeyRecord | None:
        record = await self.run_db(repository.delete_key, key_id, self.clock())
        if record is not None:
            self._forget(record.pk)
            self.limiter.forget(record.pk)
            if self.quota is not None:
                self.quota.forget(record.pk)
        return record

    async def usage_stats(self, record: KeyRecord, days: int) -> dict:
        now = self.clock()
        since = (int(now) // 86400 - days + 1) * 86400
        rows, jobs = await self.run_db(self._usage_rows, record.pk, since)
        # Counts not yet flushed are part of the truth too.
        for (_, hour, route, method), (ok, failed, duration) in self.usage.pending_for(record.pk).items():
            rows.append((hour, route, method, ok, failed, duration))
        for row in self.jobs.pending_rows_for(record.pk):
            if row["queued_at"] >= since:
                jobs[row["prompt_id"]] = (row["outcome"], row.get("execution_seconds"))
        stats = summarize(rows, days, now)
        stats["jobs"] = summarize_jobs(jobs.values())
        return stats

    @staticmethod
    def _usage_rows(database, key_pk, since):
        return repository.usage_rows(database, key_pk, since), repository.job_rows(database, key_pk, since)

    # ---- jobs --------------------------------------------------------------------------------

    async def poll_jobs(self):
        """Learn how open prompts ended, from ComfyUI's queue and history."""
        queue = self.prompt_queue()
        if queue is None or not self.jobs.open:
            return
        running, pending = queue.get_current_queue_volatile()
        in_queue = {item[1] for item in running} | {item[1] for item in pending}
        for prompt_id in list(self.jobs.open):
            history = queue.get_history(prompt_id=prompt_id)
            item = history.get(prompt_id) if history else None
            if item is not None and (item.get("status") or {}).get("completed") is not None:
                outcome, finished_at, seconds = outcome_from_history(item)
                self.jobs.finished(prompt_id, outcome, finished_at or self.clock(), seconds)
                self._job_misses.pop(prompt_id, None)
            elif prompt_id in in_queue:
                self._job_misses.pop(prompt_id, None)
            else:
                # Neither queued nor in history twice running: deleted from the
                # queue by a client, or its history was cleared.
                misses = self._job_misses.get(prompt_id, 0) + 1
                self._job_misses[prompt_id] = misses
                if misses >= 2:
                    self.jobs.finished(prompt_id, INTERRUPTED, self.clock(), None)
                    self._job_misses.pop(prompt_id, None)

    def owner_of_prompt(self, prompt_id: str):
        """(key record or None, principal kind) of whoever queued a prompt."""
        owner = self.jobs.owner(prompt_id)
        if owner is None:
            return None, None
        key_pk, kind = owner
        return (self.keys_by_pk.get(key_pk) if key_pk is not None else None), kind

    # ---- audit trail ---------------------------------------------------------------------------

    def audit(self, action: str, actor: str, client: str = "", target: str = "", **detail):
        self._audit.append({"at": self.clock(), "actor": actor, "client": client, "action": action,
                            "target": target, "detail": detail})

    async def audit_events(self, limit: int, before_id=None) -> list[dict]:
        await self.flush()
        return await self.run_db(repository.audit_events, limit, before_id)

    def last_used_of(self, record: KeyRecord, pending: dict | None = None):
        """When the key was last used; ``pending`` is ``usage.pending_last_used()``, passed in
        when describing many keys at once."""
        if pending is None:
            pending = self.usage.pending_last_used()
        best = max(self.last_used.get(record.pk, 0.0), record.last_used or 0.0, pending.get(record.pk, 0.0))
        return best or None

    def note_flushed_last_used(self, last_used: dict):
        for key_pk, when in last_used.items():
            if when > self.last_used.get(key_pk, 0.0):
                self.last_used[key_pk] = when

    # ---- sessions and the admin password ---------------------------------------------------

    async def open_session(self, kind: str, key_pk: int | None, client: str, attempt: int | None = None) -> str:
        """A new session's token. The owner's oldest sessions beyond its bound
        end; the sign-in ``attempt`` that opened it no longer counts."""
        token = secrets.token_urlsafe(32)  # 256 bits
        bound = self.settings.max_admin_sessions if key_pk is None else self.settings.max_sessions_per_key
        session, ended = await self.run_db(
            repository.create_session, token_hash=token_hash(token), kind=kind, key_pk=key_pk,
            client=client, now=self.clock(), ttl=self.settings.session_ttl, max_live=bound, attempt_id=attempt)
        self._remember_session(session)
        self._drop_sessions(ended)
        return token

    async def end_session(self, token: str):
        hashed = token_hash(token)
        self.sessions.pop(hashed, None)
        await self.run_db(repository.end_session, hashed, self.clock())

    async def end_all_sessions(self, keep_token: str | None = None) -> int:
        """Sign out everywhere: end every session (admin and key), except the
        one of ``keep_token`` if given. Other processes drop them on their next
        refresh. Returns how many ended."""
        keep = token_hash(keep_token) if keep_token else None
        ended = await self.run_db(repository.end_sessions, self.clock(), None, keep)
        self._drop_sessions(ended)
        return len(ended)

    def _drop_sessions(self, token_hashes: list[str]):
        for hashed in token_hashes:
            self.sessions.pop(hashed, None)

    # ---- sign-in attempts ------------------------------------------------------------------

    async def count_sign_in_attempt(self, client: str) -> tuple[int | None, int]:
        """Count an attempt from ``client`` in the database, where every process
        sharing it sees it: (attempt id, 0), or (None, seconds to wait) when the
        address has used up its attempts there (then refused here without asking
        again until then)."""
        now = self.clock()
        attempt, wait = await self.run_db(repository.reserve_login_attempt, client[:64], now,
                                          self.settings.login_window, self.settings.login_attempts)
        if attempt is None:
            self.login_throttle.block(client, now + wait)
        return attempt, wait

    async def uncount_sign_in_attempt(self, attempt: int):
        await self.run_db(repository.refund_login_attempt, attempt)

    async def check_admin_password(self, password: str) -> bool:
        stored = await self.run_db(repository.get_admin_password_hash)
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
        ended = await self.run_db(repository.set_admin_password_hash, hashed, self.clock(), keep)
        self._drop_sessions(ended)
        self.admin_password_set = True
        return len(ended)
