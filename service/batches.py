"""Counts gathered on the event loop, written to the database in batches.

Usage, the limiter's counts, job outcomes and audit events accumulate in
memory where the request path writes them; a flush drains them on the loop
(so no counter is half-updated) and writes the batch on the database thread.
A batch that fails to write goes back, to be written by the next flush.
"""

import time

from ..storage import repository


class BatchWriter:
    def __init__(self, db, usage, limiter, prompt_limiter, jobs, keys, claims, clock=time.time):
        self.db = db                          # the DatabaseThread
        self.usage = usage                    # UsageAggregator
        self.limiter = limiter                # the local HourlyLimiter's counts
        self.prompt_limiter = prompt_limiter  # drained only: rebuilt from the jobs table at start
        self.jobs = jobs                      # JobTracker
        self.keys = keys                      # KeyCache: learns the last uses written
        self.claims = claims                  # QuotaClaims: what the last flush gives back
        self.clock = clock
        self._audit: list[dict] = []

    def audit(self, action: str, actor: str, client: str = "", target: str = "", **detail):
        self._audit.append({"at": self.clock(), "actor": actor, "client": client, "action": action,
                            "target": target, "detail": detail})

    def drain(self):
        cells, last_used = self.usage.drain()
        self.prompt_limiter.drain()
        audit, self._audit = self._audit, []
        return cells, last_used, self.limiter.drain(), self.jobs.drain(), audit

    def restore(self, batch):
        cells, last_used, pending, jobs, audit = batch
        self.usage.restore(cells, last_used)
        self.limiter.restore(pending)
        self.jobs.restore(jobs)
        self._audit[:0] = audit

    async def flush(self):
        """Write what is pending; on failure it stays pending and the error is raised."""
        batch = self.drain()
        try:
            await self.db.call(self.write, batch)
        except Exception:
            self.restore(batch)  # keep the counts for the next try rather than lose them
            raise

    def flush_last(self, timeout: float):
        """The last flush (synchronous, at most ``timeout`` seconds): what is pending,
        and the quota this process claimed and did not spend."""
        self.db.run_sync(self._write_last, (self.drain(), self.claims.give_back(self.clock())), timeout)

    def _write_last(self, database, batch, unspent):
        self.claims.add_landed(unspent)
        if unspent:
            repository.release_quota(database, unspent)
        self.write(database, batch)

    def write(self, database, batch):
        cells, last_used, pending, jobs, audit = batch
        if cells or last_used:
            repository.write_usage(database, cells, last_used)
        if pending:
            repository.write_rate_counts(database, pending)
        if jobs:
            repository.write_jobs(database, jobs)
        if audit:
            repository.write_audit(database, audit)
        self.keys.note_flushed_last_used(last_used)
