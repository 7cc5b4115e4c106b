"""The running package: the parts in ``service`` wired together, the settings,
and the lifecycle (start, the periodic jobs, stop).

This is where the pure rules (``auth``) meet storage (``storage``). The HTTP
layer (``server_routes``) reads the parts' in-memory state directly on the
request path and awaits the coroutines here only for management calls.

The parts, each owning one thing: ``DatabaseThread`` (every database call),
``KeyCache`` (keys, principals, verified Bearer values, sessions),
``QuotaClaims`` (each key's hourly limit, shared or not), ``BatchWriter``
(usage, limiter counts, jobs and audit written in batches), ``SignIns``
(sessions opened and ended, the admin password, the setup code, attempts),
``KeyStore`` (key management) and ``JobWatch`` (how queued prompts end).
"""

import atexit
import asyncio
import logging
import os
import time
from concurrent.futures import TimeoutError as WaitTimeout

from . import paths
from .core.config import ConfigError, Settings, load_settings
from .core.jobs import JobTracker
from .core.policy import AccessPolicy
from .core.proxies import TrustedProxies
from .core.ratelimit import HourlyLimiter, window_start
from .core.usage import UsageAggregator
from .service.batches import BatchWriter
from .service.dbthread import DatabaseThread, StorageUnavailable  # noqa: F401 - imported from here too
from .service.fileowners import FileOwnerStore
from .service.jobwatch import JobWatch
from .service.keycache import VERIFIED_BEARERS_MAX, KeyCache  # noqa: F401
from .service.keystore import KeyStore
from .service.quota import QuotaClaims
from .service.signin import SignIns, token_hash  # noqa: F401
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

LAST_FLUSH_SECONDS = 3.0  # the most the last flush may hold up a process told to stop


def default_data_dir() -> str:
    override = os.environ.get(paths.DATA_DIR_VARIABLE)
    if override:
        return os.path.abspath(override)
    import folder_paths  # ComfyUI's module; present in ComfyUI and the stand-in

    if hasattr(folder_paths, "get_system_user_directory"):
        return folder_paths.get_system_user_directory("api_auth")
    return paths.data_dir(folder_paths.get_user_directory())


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
        self.policy = AccessPolicy("enable")
        self.db = DatabaseThread()
        self.keys = KeyCache(self.db)
        self.claims = QuotaClaims(self.db, self.keys, clock)
        self.usage = UsageAggregator()
        self.prompt_limiter = HourlyLimiter()  # queued workflows per hour, per key
        self.jobs = JobTracker()
        self.batches = BatchWriter(self.db, self.usage, self.claims.limiter, self.prompt_limiter, self.jobs,
                                   self.keys, self.claims, clock)
        self.sign_in = SignIns(self.db, self.keys, clock)
        self.key_store = KeyStore(self.db, self.keys, self.claims, self.usage, self.jobs, clock)
        self.job_watch = JobWatch(self.jobs, self.keys, clock)
        self.files = FileOwnerStore(self.db, self.jobs, clock)  # who produced or uploaded which file
        self.job_watch.on_finished = self.files.on_finished
        self.trusted_local_possible = False
        self.local_trust = "off"  # what a trusted local request gets here: bootstrap, on or off (set by install)
        self.trusted_proxies = TrustedProxies()
        # Routes of the server that no table and no operator setting classifies
        # (keys need admin there): [{"path", "methods"}], found once at startup.
        self.unclassified_routes: list[dict] = []
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
            config_path = paths.config_file(self.data_dir)
            self.settings = load_settings(self.environ, config_path)
        except ConfigError as error:
            self.fail(f"bad setting {error.variable}: {error}")
            return
        self.policy = AccessPolicy(self.settings.mode, self.settings.public_paths, self.settings.route_scopes)
        self.trusted_proxies = TrustedProxies(self.settings.trusted_proxies)
        self.sign_in.configure(self.settings)

    def fail(self, reason: str):
        reason = db_open.mask_secrets(reason)  # it may quote a database URL or error; it is logged
        self.problem = reason
        log.error("[api-auth] refusing to serve (every request gets 503): %s", reason)

    @property
    def db_url(self) -> str:
        return self.settings.db_url or db_open.sqlite_url(paths.db_file(self.data_dir))

    async def start(self):
        if self.problem or not self.settings.enabled:
            return
        try:
            await self.db.start(self.db_url, self._load)
        except migrations.SchemaTooNew as error:
            self.fail(str(error))
            return
        except Exception as error:  # noqa: BLE001 - any failure must fail closed
            self.fail(f"cannot open database {db_open.describe(self.db_url)}: {type(error).__name__}: {error}")
            return
        if self.settings.shared_limits == "on":
            self.claims.share()
        self.ready = True
        self._tasks = [
            asyncio.ensure_future(self._every(self.settings.refresh_interval, self.refresh_tick)),
            asyncio.ensure_future(self._every(self.settings.flush_interval, self.flush)),
            asyncio.ensure_future(self._every(3600, self.purge_old, first=0)),
            asyncio.ensure_future(self._every(1.0, self.job_watch.poll_jobs)),
            asyncio.ensure_future(self._every(self.settings.refresh_interval, self.files.refresh)),
        ]
        if self.claims.quota is not None:
            self._tasks.append(asyncio.ensure_future(self._every(self.settings.refresh_interval,
                                                                self.claims.refresh_claimed)))
        atexit.register(self.flush_sync)

    def _load(self, database):
        """On the db thread, before serving: the schema, then what the parts hold in memory."""
        before, after = migrations.ensure_ready(database)
        if before != after:
            log.info("[api-auth] database schema upgraded from version %s to %s", before, after)
        now = self.clock()
        self.keys.load(database, now)
        self.files.load(database)
        for key_pk, used in repository.rate_counts(database, window_start(now)).items():
            self.claims.limiter.seed(key_pk, window_start(now), used)
        for key_pk, queued in repository.prompts_queued_since(database, window_start(now)).items():
            self.prompt_limiter.seed(key_pk, window_start(now), queued)
        if self.settings.admin_password:
            self.sign_in.apply_env_password(database, self.settings.admin_password)
        last_mode = repository.get_meta_text(database, "last_mode")
        if last_mode != self.settings.mode:
            repository.set_meta_text(database, "last_mode", self.settings.mode)
            repository.write_audit(database, [{"at": now, "actor": "config", "action": "mode_change",
                                               "target": self.settings.mode, "detail": {"from": last_mode}}])
        self.keys.admin_password_set = repository.get_admin_password_hash(database) is not None

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
        try:
            self.batches.flush_last(timeout)
            self.db.run_sync(self.files.flush_last, (), timeout)
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

    # ---- the periodic jobs ---------------------------------------------------------

    async def refresh_tick(self):
        """Other processes' changes, then a sweep of open sockets (also when the
        database fails: sessions still run out)."""
        try:
            await self.keys.refresh(self.clock())
        finally:
            self.keys.access_changed()

    async def flush(self):
        """Write the pending batch; while writes fail, every request gets 503."""
        try:
            await self.batches.flush()
            await self.files.flush()
        except Exception as error:
            if self.degraded is None:
                log.error("[api-auth] cannot write usage to the database (%s: %s): answering 503 to every "
                          "request until it works again", type(error).__name__, error)
            self.degraded = f"database writes fail: {type(error).__name__}"
            raise
        if self.degraded is not None:
            log.warning("[api-auth] database writes work again; serving requests")
            self.degraded = None

    async def purge_old(self):
        """Drop what has outlived its retention (hourly, and once at start)."""
        now = self.clock()
        cutoff = int(now) // 3600 * 3600 - self.settings.usage_retention_days * 86400
        await self.db.run(repository.purge_usage, cutoff)
        await self.db.run(repository.purge_sessions, now)
        await self.db.run(repository.purge_audit, now - self.settings.audit_retention_days * 86400)
        await self.db.run(repository.purge_login_attempts, now - self.settings.login_window)

    # ---- audit trail ---------------------------------------------------------------------------

    def audit(self, action: str, actor: str, client: str = "", target: str = "", **detail):
        self.batches.audit(action, actor, client, target, **detail)

    async def audit_events(self, limit: int, before_id=None) -> list[dict]:
        await self.flush()
        return await self.db.run(repository.audit_events, limit, before_id)
