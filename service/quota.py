"""Each key's hourly request limit in this process.

Alone, a process counts in its own limiter (``HourlyLimiter``) and flushes the
counts. With shared limits, processes claim batches of a key's quota from the
database (``SharedQuota`` holds this process's batches): concurrent requests
share one claim, a batch running low is claimed ahead, and what is left
unspent is given back when the process stops.
"""

import asyncio
import logging

from ..core.principals import KeyRecord
from ..core.ratelimit import REFUSED, HourlyLimiter, SharedQuota, window_start
from ..storage import repository

log = logging.getLogger("comfyui_api_auth")


class QuotaClaims:
    def __init__(self, db, keys, clock):
        self.db = db        # the DatabaseThread
        self.keys = keys    # the KeyCache: records by pk, for a batch claimed ahead
        self.clock = clock
        self.limiter = HourlyLimiter()
        self.quota: SharedQuota | None = None  # set when several processes share the limits
        self._claims: dict[int, asyncio.Future] = {}
        # Claims committed on the db thread whose grant the loop has not applied
        # yet: the last flush gives them back too (see _claim_on_db).
        self._landed: list[tuple] = []
        self.waiters: dict[int, int] = {}  # key pk -> requests waiting for a claim

    def share(self):
        """Limits shared with other processes from now on (set at start)."""
        self.quota = SharedQuota()

    def forget(self, key_pk: int):
        self.limiter.forget(key_pk)
        if self.quota is not None:
            self.quota.forget(key_pk)

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

    async def take_shared(self, key: KeyRecord, window: int, now: float) -> int:
        """Spend from this process's batch; claim another from the database when it runs out."""
        # Each claim grants at least one request or learns the hour is spent,
        # so this ends; the bound is a guard against a database gone strange.
        waiters = self.waiters
        waiters[key.pk] = waiters.get(key.pk, 0) + 1  # claims ask for what is waiting, no more
        try:
            for _ in range(100):
                remaining = self.quota.take(key.pk, key.rate_limit, window)
                if remaining is not None:
                    return remaining
                await self.claim(key, now)
            return REFUSED
        finally:
            waiters[key.pk] -= 1

    async def claim(self, key: KeyRecord, now: float):
        """Claim the next batch of a key's hourly quota; concurrent callers share one claim,
        which asks for at least as many requests as are waiting (see ``waiters``)."""
        claim = self._claims.get(key.pk)
        if claim is None:
            claim = self._start_claim(key, now)
        await asyncio.shield(claim)

    def prefetch(self, key: KeyRecord, now: float):
        """Start claiming the next batch without waiting for it (no-op if a claim is under way)."""
        if key.pk not in self._claims:
            self._start_claim(key, now)

    def prefetch_running_low(self, now: float):
        """Claim the next batch for each key whose batch ran low (see ``SharedQuota.running_low``)."""
        running_low = self.quota.running_low
        while running_low:
            record = self.keys.by_pk.get(running_low.pop())
            if record is not None:
                self.prefetch(record, now)

    def _start_claim(self, key, now):
        claim = asyncio.ensure_future(self._claim(key, now))
        self._claims[key.pk] = claim
        claim.add_done_callback(self._claim_done(key.pk))
        return claim

    def _claim_done(self, key_pk):
        def done(claim):
            self._claims.pop(key_pk, None)
            if not claim.cancelled() and claim.exception() is not None:
                log.warning("[api-auth] claiming quota failed: %s", claim.exception())
        return done

    async def _claim(self, key: KeyRecord, now: float):
        await asyncio.sleep(0)  # let the requests of this burst line up first
        window = window_start(now)
        want = max(self.waiters.get(key.pk, 0), self.quota.batch_size(key.pk, key.rate_limit, now))
        landed = await self.db.run(self._claim_on_db, key.pk, window, want, key.rate_limit)
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

    # ---- giving back ------------------------------------------------------------------

    def give_back(self, now: float) -> dict:
        """{(key pk, window): requests}: the batches this process holds, no longer
        its to spend (the last flush; taken on the loop, between two requests)."""
        return self.quota.give_back(now) if self.quota is not None else {}

    def add_landed(self, unspent: dict):
        """Claims that landed on the db thread after the loop stopped granting are
        unspent too (run on the db thread, by the last flush)."""
        landed, self._landed = self._landed, []
        for key_pk, window, granted, _ in landed:
            if granted:
                unspent[(key_pk, window)] = unspent.get((key_pk, window), 0) + granted

    # ---- what was charged -----------------------------------------------------------

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
        return await self.db.run(repository.rate_counts, window, key_pks if len(key_pks) <= 100 else None)
