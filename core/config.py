"""Settings: environment variables over a JSON file in the data directory.

A bad value raises :class:`ConfigError` naming the variable; the caller then
answers every request with 503 instead of falling back to an open server.
"""

import ipaddress
import json
import os
from dataclasses import dataclass, field

from .node_rules import NO_RULES, NodeRules, parse_node_rules
from .policy import BUILTIN_RULES, is_package_path

ENV_PREFIX = "COMFYUI_API_AUTH"
MODES = ("enable", "require", "off")
# What a trusted local request may do (see the README, "Becoming admin").
LOCAL_TRUST = ("bootstrap", "on", "off")


class ConfigError(Exception):
    def __init__(self, variable: str, message: str):
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    mode: str = "enable"
    db_url: str | None = None
    admin_password: str | None = field(default=None, repr=False)
    trust_localhost: str = "bootstrap"  # one of LOCAL_TRUST
    trusted_proxies: tuple = ()  # ip_network objects whose X-Forwarded-For / -Proto are believed
    allow_framing: bool = False  # True: HTML pages may be framed by other sites
    public_paths: tuple[str, ...] = ()
    # The scope a key needs on routes the operator decided: exact paths, or
    # prefixes ending in "/", without the /api twin prefix -> read/generate/admin.
    route_scopes: dict = field(default_factory=dict)
    session_ttl: int = 7 * 24 * 3600
    usage_retention_days: int = 400
    flush_interval: float = 2.0
    refresh_interval: float = 2.0
    login_attempts: int = 10
    login_window: int = 300
    max_body_bytes: int = 64 * 1024
    shared_limits: str = "on"  # on: claim quota from the database in batches (several processes)
    login_concurrency: int = 2  # admin password checks (bcrypt) in flight per process; more get 429
    max_sessions_per_key: int = 10  # live sessions opened with one key; the oldest ends first
    max_admin_sessions: int = 50  # live sessions opened with the admin password
    audit_retention_days: int = 90
    node_rules: NodeRules = NO_RULES  # node classes each scope may queue (core.node_rules); none: all
    query_token: bool = False  # True: a key may also come as ?token=<key> in the URL (see the README)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


# name in the environment (after the prefix) / in config.json -> (field, parser)
def _parse_bool(text):
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected on/off, true/false, 1/0")


def _int_range(low, high):
    def parse(text):
        if isinstance(text, bool):
            raise ValueError("expected an integer")
        value = int(str(text).strip())
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value
    return parse


def _float_range(low, high):
    def parse(text):
        if isinstance(text, bool):
            raise ValueError("expected a number")
        value = float(str(text).strip())
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return value
    return parse


def _parse_mode(text):
    value = str(text).strip().lower()
    if value not in MODES:
        raise ValueError("expected one of " + ", ".join(MODES))
    return value


def _parse_paths(text):
    items = text if isinstance(text, list) else str(text).split(",")
    paths = []
    for item in items:
        path = str(item).strip()
        if not path:
            continue
        if not path.startswith("/") or "*" in path:
            raise ValueError("expected exact paths starting with '/', comma-separated")
        if is_package_path(path):
            # Its handler expects the principal its rule lets in (GET /usage
            # reads the caller's key); opened to anyone it would fail or leak.
            raise ValueError(f"'{path}' is one of this package's routes; a public path cannot open it")
        paths.append(path)
    return tuple(paths)


ROUTE_SCOPE_NAMES = ("read", "generate", "admin")


def _parse_route_scopes(text):
    """``{"/my_node/": "generate", "/exact/path": "read"}`` (a JSON object, in the
    environment as text): which scope a key needs there."""
    value = json.loads(text) if isinstance(text, str) else text
    if not isinstance(value, dict):
        raise ValueError('expected a JSON object of path or prefix -> scope, e.g. {"/my_node/": "generate"}')
    scopes = {}
    for path, scope in value.items():
        if not isinstance(path, str) or not path.startswith("/") or "*" in path or "{" in path:
            raise ValueError(f"'{path}' is not a path: expected an exact path or a prefix ending in '/', "
                             f"starting with '/', without wildcards")
        if scope not in ROUTE_SCOPE_NAMES:
            raise ValueError(f"'{path}': scope must be one of {', '.join(ROUTE_SCOPE_NAMES)} "
                             f"(to open a path to anyone, use COMFYUI_API_AUTH_PUBLIC_PATHS)")
        path = path[4:] if path.startswith("/api/") else path  # both twins are one route
        covered = path.endswith("/") and any(rule.startswith(path) for rule, _ in BUILTIN_RULES)
        if covered or is_package_path(path) or is_package_path(path.rstrip("/") or "/"):
            raise ValueError(f"'{path}' is one of this package's routes; its rule cannot be changed")
        scopes[path] = scope
    return scopes


def _parse_on_off(text):
    return "on" if _parse_bool(text) else "off"


def _parse_local_trust(text):
    value = str(text).strip().lower() if not isinstance(text, bool) else ("on" if text else "off")
    if value in LOCAL_TRUST:
        return value
    try:
        return "on" if _parse_bool(value) else "off"  # the old boolean values
    except ValueError:
        raise ValueError("expected bootstrap, on or off") from None


def _parse_networks(text):
    """Addresses or CIDRs, comma-separated (or a JSON list); a host part in a CIDR is refused."""
    items = text if isinstance(text, list) else str(text).split(",")
    if not isinstance(text, list) and not str(text).strip():
        return ()
    networks = []
    for item in items:
        entry = str(item).strip()
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError:
            raise ValueError(f"'{entry}' is not an IP address or CIDR (expected e.g. 127.0.0.1, 10.0.0.0/8, ::1)") \
                from None
    return tuple(networks)


def _parse_text(text):
    value = str(text)
    if not value:
        raise ValueError("must not be empty")
    return value


OPTIONS = {
    "": ("mode", _parse_mode),
    "DB": ("db_url", _parse_text),
    "ADMIN_PASSWORD": ("admin_password", _parse_text),
    "TRUST_LOCALHOST": ("trust_localhost", _parse_local_trust),
    "TRUSTED_PROXIES": ("trusted_proxies", _parse_networks),
    "ALLOW_FRAMING": ("allow_framing", _parse_bool),
    "PUBLIC_PATHS": ("public_paths", _parse_paths),
    "ROUTE_SCOPES": ("route_scopes", _parse_route_scopes),
    "SESSION_TTL": ("session_ttl", _int_range(60, 366 * 24 * 3600)),
    "USAGE_RETENTION_DAYS": ("usage_retention_days", _int_range(1, 10000)),
    "FLUSH_INTERVAL": ("flush_interval", _float_range(0.05, 60)),
    "REFRESH_INTERVAL": ("refresh_interval", _float_range(0.05, 60)),
    "LOGIN_ATTEMPTS": ("login_attempts", _int_range(1, 10000)),
    "LOGIN_WINDOW": ("login_window", _int_range(1, 86400)),
    "SHARED_LIMITS": ("shared_limits", _parse_on_off),
    "LOGIN_CONCURRENCY": ("login_concurrency", _int_range(1, 64)),
    "MAX_SESSIONS_PER_KEY": ("max_sessions_per_key", _int_range(1, 10000)),
    "MAX_ADMIN_SESSIONS": ("max_admin_sessions", _int_range(1, 10000)),
    "AUDIT_RETENTION_DAYS": ("audit_retention_days", _int_range(1, 100000)),
    "NODE_RULES": ("node_rules", parse_node_rules),
    "QUERY_TOKEN": ("query_token", _parse_bool),
}


def variable_name(suffix: str) -> str:
    return ENV_PREFIX + ("_" + suffix if suffix else "")


def read_config_file(path: str) -> dict:
    """The JSON file's options, keyed like the variables (``mode``, ``db``...)."""
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise ConfigError(path, f"cannot read config file: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "config file must hold a JSON object")
    return data


def load_settings(environ=None, config_path: str | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    file_options = read_config_file(config_path) if config_path else {}
    values = {}
    known_file_keys = {suffix.lower() or "mode" for suffix in OPTIONS}
    for key in file_options:
        if key not in known_file_keys:
            raise ConfigError(f"{config_path}:{key}", "unknown setting")
    for suffix, (attribute, parse) in OPTIONS.items():
        name = variable_name(suffix)
        file_key = suffix.lower() or "mode"
        if name in environ:
            raw, source = environ[name], name
        elif file_key in file_options:
            raw, source = file_options[file_key], f"{config_path}:{file_key}"
        else:
            continue
        try:
            values[attribute] = parse(raw)
        except (ValueError, TypeError) as error:
            raise ConfigError(source, str(error)) from None
    mode = values.get("mode", "enable")
    # Trusting loopback is a convenience for a desktop install; in require
    # mode the operator asked for a locked server, so it is off unless asked.
    values.setdefault("trust_localhost", "bootstrap" if mode == "enable" else "off")
    return Settings(**values)
