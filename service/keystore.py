"""Managing keys: create, list, read, change, delete, and what a key used.

Every change is written to the database first, then remembered in the key
cache (so the request path sees it at once), and open sockets are swept.
"""

from ..core import keys as key_format
from ..core.jobs import summarize_jobs
from ..core.principals import KeyRecord
from ..core.usage import summarize
from ..storage import repository


class KeyStore:
    def __init__(self, db, keys, claims, usage, jobs, clock):
        self.db = db          # the DatabaseThread
        self.keys = keys      # the KeyCache
        self.claims = claims  # QuotaClaims: a deleted key's counters go; requests this hour
        self.usage = usage    # UsageAggregator: counts not yet flushed
        self.jobs = jobs      # JobTracker: prompts not yet flushed
        self.clock = clock

    async def create_key(self, name, rate_limit, metadata, scopes, job_limits=None, expires_at=None,
                         allowed_ips=()) -> tuple[KeyRecord, str]:
        made = key_format.new_key()
        record = await self.db.run(
            repository.create_key, **made.stored,
            name=name, rate_limit=rate_limit, metadata=metadata, scopes=scopes, now=self.clock(),
            job_limits=job_limits, expires_at=expires_at, allowed_ips=allowed_ips)
        self.keys.remember(record)
        return record, made.plaintext

    async def list_keys(self) -> list[KeyRecord]:
        records = await self.db.run(repository.list_keys)
        for record in records:
            self.keys.remember(record)
        return records

    async def get_key(self, key_id: str) -> KeyRecord | None:
        return await self.db.run(repository.get_key, key_id)

    async def update_key(self, key_id: str, changes: dict) -> KeyRecord | None:
        record = await self.db.run(repository.update_key, key_id, changes, self.clock())
        if record is not None:
            self.keys.remember(record)
            self.keys.access_changed()
        return record

    async def rotate_key(self, key_id: str, grace_seconds: int) -> tuple[KeyRecord | None, str]:
        """A new secret for the key (shown once); the old one works ``grace_seconds`` more."""
        made = key_format.new_key()
        record, ended = await self.db.run(repository.rotate_key, key_id, made.key_hash, made.prefix,
                                          grace_seconds, self.clock())
        if record is None:
            return None, ""
        self.keys.remember(record)
        self.keys.drop_sessions(ended)
        self.keys.access_changed()
        return record, made.plaintext

    async def delete_key(self, key_id: str) -> KeyRecord | None:
        record = await self.db.run(repository.delete_key, key_id, self.clock())
        if record is not None:
            self.keys.forget(record.pk)
            self.claims.forget(record.pk)
            self.keys.access_changed()
        return record

    # ---- what a key used ---------------------------------------------------------------

    def last_used_of(self, record: KeyRecord, pending: dict | None = None):
        """When the key was last used; ``pending`` is ``usage.pending_last_used()``, passed in
        when describing many keys at once."""
        return self.keys.last_used_of(record, self.usage.pending_last_used() if pending is None else pending)

    async def requests_this_hour(self, key_pks) -> dict[int, int]:
        return await self.claims.requests_this_hour(key_pks)

    async def usage_stats(self, record: KeyRecord, days: int) -> dict:
        now = self.clock()
        since = (int(now) // 86400 - days + 1) * 86400
        rows, jobs = await self.db.run(self._usage_rows, record.pk, since)
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
