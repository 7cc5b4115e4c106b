"""Peewee models. Bound at open time through ``database_proxy``."""

import peewee

database_proxy = peewee.DatabaseProxy()


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Meta(BaseModel):
    """Named values: schema version, change revision, admin password hash."""

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

    class Meta:
        table_name = "api_auth_keys"


class Session(BaseModel):
    token_hash = peewee.CharField(max_length=64, unique=True)
    kind = peewee.CharField(max_length=16)  # "admin" or "key"
    key_pk = peewee.BigIntegerField(null=True)
    created_at = peewee.DoubleField()
    expires_at = peewee.DoubleField(index=True)
    ended_at = peewee.DoubleField(null=True)
    client = peewee.CharField(max_length=64, default="")
    revision = peewee.BigIntegerField(index=True)

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


ALL_MODELS = [Meta, ApiKey, Session, UsageHourly, RateWindow]
