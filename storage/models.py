"""Peewee models. Bound at open time through ``database_proxy``."""

import peewee

database_proxy = peewee.DatabaseProxy()


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class MetaValue(BaseModel):
    """Named values: schema version, change revision, admin password hash.
    (Not ``Meta``: that name is Peewee's inner options class; the table keeps its name.)"""

    name = peewee.CharField(max_length=64, primary_key=True)
    number = peewee.BigIntegerField(default=0)
    text = peewee.TextField(null=True)

    class Meta:
        table_name = "api_auth_meta"


class ApiKey(BaseModel):
    key_id = peewee.CharField(max_length=32, unique=True)
    key_hash = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.CharField(max_length=16)
    name = peewee.CharField(max_length=100)
    rate_limit = peewee.BigIntegerField()
    is_active = peewee.BooleanField(default=True)
    metadata = peewee.TextField(default="{}")
    scopes = peewee.TextField(default="")
    created_at = peewee.DoubleField()
    updated_at = peewee.DoubleField()
    last_used = peewee.DoubleField(null=True)
    deleted_at = peewee.DoubleField(null=True)
    revision = peewee.BigIntegerField(index=True)
    # schema v2: limits on queued workflows (null = unlimited)
    prompts_per_hour = peewee.BigIntegerField(null=True)
    max_waiting = peewee.BigIntegerField(null=True)
    # schema v5: the key's lifecycle. expires_at: Unix seconds, null = never;
    # allowed_ips: canonical addresses/CIDRs, comma-separated, "" = anywhere;
    # rotation: the secret's generation, and the previous secret's hash with
    # the end of its grace period (null when there is none).
    expires_at = peewee.DoubleField(null=True)
    allowed_ips = peewee.TextField(default="")
    generation = peewee.BigIntegerField(default=0)
    previous_key_hash = peewee.CharField(max_length=64, null=True)
    previous_valid_until = peewee.DoubleField(null=True)

    class Meta:
        table_name = "api_auth_keys"


class Session(BaseModel):
    # schema v3 adds an index on (key_pk, ended_at) (in the migration, not here:
    # v1 creates this table from this model) for the bound on sessions per key.
    token_hash = peewee.CharField(max_length=64, unique=True)
    kind = peewee.CharField(max_length=16)  # "admin" or "key"
    key_pk = peewee.BigIntegerField(null=True)
    created_at = peewee.DoubleField()
    expires_at = peewee.DoubleField(index=True)
    ended_at = peewee.DoubleField(null=True)
    client = peewee.CharField(max_length=64, default="")
    revision = peewee.BigIntegerField(index=True)
    # schema v5: which of its key's secrets opened it (ApiKey.generation), so
    # that rotating the key ends the sessions of the old secret with it.
    key_generation = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "api_auth_sessions"


class UsageHourly(BaseModel):
    key_pk = peewee.BigIntegerField()
    hour = peewee.BigIntegerField()
    route = peewee.CharField(max_length=200)
    method = peewee.CharField(max_length=16)
    successful = peewee.BigIntegerField(default=0)
    failed = peewee.BigIntegerField(default=0)
    duration = peewee.DoubleField(default=0.0)

    class Meta:
        table_name = "api_auth_usage_hourly"
        indexes = ((("key_pk", "hour", "route", "method"), True),)


class RateWindow(BaseModel):
    key_pk = peewee.BigIntegerField()
    window = peewee.BigIntegerField()
    used = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "api_auth_rate_windows"
        indexes = ((("key_pk", "window"), True),)


class Job(BaseModel):
    """A prompt accepted by /prompt, tied to who queued it (schema v2)."""

    prompt_id = peewee.CharField(max_length=100, unique=True)
    key_pk = peewee.BigIntegerField(null=True, index=True)
    principal = peewee.CharField(max_length=16)  # anonymous, key, admin
    queued_at = peewee.DoubleField(index=True)
    outcome = peewee.CharField(max_length=16, default="queued")  # completed, failed, interrupted
    finished_at = peewee.DoubleField(null=True)
    execution_seconds = peewee.DoubleField(null=True)

    class Meta:
        table_name = "api_auth_jobs"


class AuditEvent(BaseModel):
    """An admin action (schema v2). Never holds a secret."""

    at = peewee.DoubleField(index=True)
    actor = peewee.CharField(max_length=120)
    client = peewee.CharField(max_length=64, default="")
    action = peewee.CharField(max_length=32)
    target = peewee.CharField(max_length=120, default="")
    detail = peewee.TextField(default="{}")

    class Meta:
        table_name = "api_auth_audit"


class LoginAttempt(BaseModel):
    """A sign-in attempt counted against a client address (schema v3), so that
    processes sharing the database share one limit. Deleted again when the
    attempt succeeds; purged once older than the longest window."""

    client = peewee.CharField(max_length=64)
    at = peewee.DoubleField()

    class Meta:
        table_name = "api_auth_login_attempts"
        indexes = ((("client", "at"), False),)


class FileOwner(BaseModel):
    """A key that owns a file of ComfyUI's input, output or temp folder (schema
    v6): one of its prompts produced it, or it uploaded it. ``path`` is the
    file's path inside the folder ``kind``, JSON-escaped; the unique index is
    on its SHA-256 (a path may be longer than an index entry may be)."""

    kind = peewee.CharField(max_length=8)  # input, output, temp
    path = peewee.TextField()
    path_hash = peewee.CharField(max_length=64)
    key_pk = peewee.BigIntegerField()
    at = peewee.DoubleField()

    class Meta:
        table_name = "api_auth_file_owners"
        indexes = ((("kind", "path_hash", "key_pk"), True),)


ALL_MODELS = [MetaValue, ApiKey, Session, UsageHourly, RateWindow, Job, AuditEvent, LoginAttempt, FileOwner]
