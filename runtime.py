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
from concurrent.futures import TimeoutError as WaitTimeout

import peewee

from .auth import keys as key_format
from .auth import passwords
from .auth import setup_code
from .auth.config import ConfigError, Settings, load_settings
from .auth.jobs import INTERRUPTED, JobTracker, outcome_from_history, summarize_jobs
from .auth.policy import AccessPolicy
from .auth.principals import KeyRecord, Principal, for_key
from .auth.proxies import TrustedProxies
from .auth.ratelimit import REFUSED, HourlyLimiter, SharedQuota, window_start
from .auth.throttle import AttemptThrottle, WorkSlots
from .auth.usage import UsageAggregator, summarize
from .storage import database as db_open
from .storage import migrations, repository

log = logging.getLogger("comfyui_api_auth")


class _MaskDatabasePasswords(logging.Filter):
    """Every line of the package's log goes out with database passwords masked:
    database URLs and drivers' error messages reach it (``mask_secrets``)."""

    def filter(self, record):
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = db_open.mask_secrets(record.exc_text)
        message = record.getMessage()
        masked = db_open.mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


log.addFilter(_MaskDatabasePasswords())

DATA_DIR_NAME = "__api_auth"
VERIFIED_BEARERS_MAX = 4096  # bound of AuthRuntime.verified_bearers
ACTIVE = None  # the runtime installed into ComfyUI, for the nodes
DB_FILE_NAME = "auth.db"
LAST_FLUSH_SECONDS = 3.0  # the most the last flush may hold up a process told to stop


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
        # Claims committed on the db thread whose grant the loop has not applied
        # yet: the last flush gives them back too (see _claim_on_db).
        self._landed: list[tuple] = []
        self.quota_waiters: dict[int, int] = {}  # key pk -> requests waiting for a claim
        self.prompt_limiter = HourlyLimiter()  # queued workflows per hour, per key
        self.jobs = JobTracker()
        self.prompt_queue = lambda: None  # set by install: ComfyUI's PromptQueue, once it exists
        # Called after this process ends or changes a key or a session, and on every
        # refresh tick (others' changes, sessions running out); install sets it to
        # close the WebSockets whose key or session no longer gets in.
        self.access_changed = lambda: None
        self._job_misses: dict[str, int] = {}
        self._audit: list[dict] = []
        self.usage = UsageAggregator()
        self.last_used: dict[int, float] = {}
        self.login_throttle = AttemptThrottle(10, 300)
        self.password_checks = WorkSlots(2)  # bcrypt runs at once in this process
        self.trusted_local_possible = False
        self.local_trust = "off"  # what a trusted local request gets here: bootstrap, on or off (set by install)
        self.trusted_proxies = TrustedProxies()
        self.admin_password_set = False
        self.admin_keys: set[int] = set()  # pks of active keys with the admin scope
        self._setup_code: bytes | None = None  # digest of the one-time setup code, while no admin exists
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
        self.trusted_proxies = TrustedProxies(self.settings.trusted_proxies)
        self.password_checks = WorkSlots(self.settings.login_concurrency)

    def fail(self, reason: str):
        reason = db_open.mask_secrets(reason)  # it may quote a database URL or error; it is logged
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
            raise StorageUnavailable(db_open.mask_secrets(f"{type(error).__name__}: {error}")) from None

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
            asyncio.ensure_future(self._every(self.settings.refresh_interval, self.refresh_tick)),
            asyncio.ensure_future(self._every(self.settings.flush_interval, self.flush)),
            asyncio.ensure_future(self._every(3600, self.purge_old, first=0)),
            asyncio.ensure_future(self._every(1.0, self.poll_jobs)),
        ]
        if self.quota is not None:
            self._tasks.append(asyncio.ensure_future(self._every(self.settings.refresh_interval, self.refresh_claimed)))
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

    def flush_sync(self, timeout: float = LAST_FLUSH_SECONDS):
        """The last flush: write what is pending and give back the quota this
        process claimed and did not spend, so a restart costs a key nothing.

        Synchronous, for the places that cannot await: the SIGTERM/SIGINT
        handler (server_routes/exit_signals.py; ComfyUI skips on_shutdown on
        both) and atexit. It runs on the db thread, after every claim already
        queued there, and waits at most ``timeout`` seconds; once the
        interpreter is exiting (atexit) that thread is gone and it runs here.
        """
        if self._closed or not self.ready:
            return
        self._closed = True
        args = (self._drain(), self.quota.give_back(self.clock()) if self.quota is not None else {})
        try:
            try:
                done = self._executor.submit(self._on_db_thread, self._write_last, args, {})
            except RuntimeError:  # interpreter shutdown: no new work on the db thread
                self._on_db_thread(self._write_last, args, {})
            else:
                done.result(timeout)
        except WaitTimeout:
            log.error("[api-auth] the last usage flush did not finish within %.0f s; "
                      "this process's unspent quota stays charged until the hour ends", timeout)
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
        landed = await self.run_db(self._claim_on_db, key.pk, window, want, key.rate_limit)
        try:
            self._landed.remove(landed)
        except ValueError:  # the last flush gave it back already
            return
        self.quota.grant(*landed)

    def _claim_on_db(self, database, key_pk, window, want, limit):
        granted, claimed = repository.claim_quota(database, key_pk, window, want, limit)
        landed = (key_pk, window, granted, claimed)
        self._landed.append(landed)  # until the loop grants it (list ops are atomic under the GIL)
        return landed

    async def requests_this_hour(self, key_pks) -> dict[int, int]:
        """{key pk: requests this UTC hour}, across every process and restart,
        counted as the limiter charges them (README, "Rate limits").

        Shared limits: what all processes claimed from the database and did not
        give back, less what this process holds unspent. Every claim committed
        before the read has been granted here when the read returns (the db
        thread answers in order), so the subtraction matches the read.
        Otherwise: what every process flushed, plus what this one has not yet;
        taken before the read, since any flush drained before it is written
        before the read.
        """
        window = window_start(self.clock())
        key_pks = list(key_pks)
        if self.quota is None:
            unflushed = {key_pk: self.limiter.unflushed(key_pk, window) for key_pk in key_pks}
        charged = await self._charged(window, key_pks)
        if self.quota is None:
            return {key_pk: charged.get(key_pk, 0) + unflushed[key_pk] for key_pk in key_pks}
        return {key_pk: max(0, charged.get(key_pk, 0) - self.quota.unspent_of(key_pk, window))
                for key_pk in key_pks}

    async def refresh_claimed(self):
        """Every REFRESH_INTERVAL, read the hour's claimed totals of the keys this
        process holds quota of: X-RateLimit-Remaining then follows what other
        processes claimed since, and quota they gave back can be claimed here."""
        window = window_start(self.clock())
        held = self.quota.held(window)
        if held:
            for key_pk, claimed in (await self._charged(window, held)).items():
                self.quota.observe(key_pk, window, claimed)

    async def _charged(self, window, key_pks):
        # A long list reads the whole hour (one row per key used in it) rather than a huge IN (...).
        return await self.run_db(repository.rate_counts, window, key_pks if len(key_pks) <= 100 else None)

    # ---- caches ------------------------------------------------------------------

    def _remember(self, record: KeyRecord):
        self.verified_bearers.clear()
        old = self.keys_by_pk.get(record.pk)
        if old is not None and old.key_hash != record.key_hash:
            self.key_principals.pop(bytes.fromhex(old.key_hash), None)
        self.keys_by_pk[record.pk] = record
        self.key_principals[bytes.fromhex(record.key_hash)] = for_key(record, "header")
        if record.is_admin and record.is_active:
            self.admin_keys.add(record.pk)
        else:
            self.admin_keys.discard(record.pk)
        if record.last_used and record.last_used > self.last_used.get(record.pk, 0.0):
            self.last_used[record.pk] = record.last_used

    def _forget(self, key_pk: int):
        self.verified_bearers.clear()
        record = self.keys_by_pk.pop(key_pk, None)
        self.admin_keys.discard(key_pk)
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

    async def refresh_tick(self):
        """The periodic refresh, then a sweep of open sockets (also when the
        database fails: sessions still run out)."""
        try:
            await self.refresh()
        finally:
            self.access_changed()

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

    def _write_last(self, database, batch, unspent):
        # Claims that landed here after the loop stopped granting are unspent too.
        landed, self._landed = self._landed, []
        for key_pk, window, granted, _ in landed:
            if granted:
                unspent[(key_pk, window)] = unspent.get((key_pk, window), 0) + granted
        if unspent:
            repository.release_quota(database, unspent)
        self._write(batch)

    def _write(self, batch):
        cells, last_used, pending, jobs, audit = batch
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
            self.access_changed()
        return record

    async def delete_key(self, key_id: str) -> KeyRecord | None:
        record = await self.run_db(repository.delete_key, key_id, self.clock())
        if record is not None:
            self._forget(record.pk)
            self.limiter.forget(record.pk)
            if self.quota is not None:
                self.quota.forget(record.pk)
            self.access_changed()
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
        self.access_changed()
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
        if token_hashes:
            self.access_changed()  # their sockets close now, not at the next refresh

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

    @property
    def admin_exists(self) -> bool:
        """An admin can sign in: an admin password is set or an active admin key exists."""
        return self.admin_password_set or bool(self.admin_keys)

    @property
    def admin_password_managed(self) -> bool:
        """COMFYUI_API_AUTH_ADMIN_PASSWORD is set: it is the password, changed only there."""
        return self.settings.admin_password is not None

    def new_setup_code(self) -> str | None:
        """A fresh one-time setup code to print, or None when an admin exists already."""
        if self.admin_exists:
            self._setup_code = None
            return None
        shown, self._setup_code = setup_code.new_code()
        return shown

    @property
    def setup_available(self) -> bool:
        return self._setup_code is not None and not self.admin_exists

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
        if self._setup_code is None and not self.admin_exists:
            self._setup_code = spent

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
