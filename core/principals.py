"""Who is calling: anonymous, a key holder, an admin, or the local bootstrap."""

from dataclasses import dataclass, field

from .addresses import parse_networks
from .scopes import ADMIN, ADMIN_LEVEL, NO_LEVEL, level_of

INF = float("inf")

ANONYMOUS_KIND = "anonymous"
KEY_KIND = "key"
ADMIN_KIND = "admin"
# A trusted local request while no admin exists (COMFYUI_API_AUTH_TRUST_LOCALHOST=bootstrap):
# it may manage non-admin keys, and is anonymous everywhere else.
BOOTSTRAP_KIND = "bootstrap"


@dataclass(frozen=True)
class KeyRecord:
    """A key as the request path sees it; never holds the plaintext."""

    pk: int
    key_id: str
    key_hash: str
    name: str
    prefix: str
    rate_limit: int
    is_active: bool
    metadata: dict = field(default_factory=dict, compare=False)
    scopes: tuple = ()
    created_at: float = 0.0
    last_used: float | None = None
    prompts_per_hour: int | None = None  # queued workflows per hour; None = unlimited
    max_waiting: int | None = None       # workflows queued or running at once; None = unlimited
    expires_at: float | None = None      # Unix seconds after which the key no longer works; None = never
    allowed_ips: tuple = ()              # canonical addresses/CIDRs it may be used from; () = anywhere
    # Rotation: how many times the secret was replaced, and the secret before
    # the current one (its SHA-256 in hex) with the end of its grace period.
    generation: int = 0
    previous_key_hash: str | None = field(default=None, repr=False)
    previous_valid_until: float | None = None
    # allowed_ips parsed (core.addresses), once per record, for the request path
    networks: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.allowed_ips:
            object.__setattr__(self, "networks", parse_networks(self.allowed_ips))

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class Principal:
    kind: str
    via: str  # "header", "session", "local" or "none"
    key: KeyRecord | None = None
    # What it may reach (core.scopes.LEVELS): a key's highest scope, worked out
    # once when the principal is built; the request path compares it to a route's.
    level: int = NO_LEVEL
    # When this credential stops working: the key's expiry, or for the previous
    # secret of a rotated key the end of its grace period, whichever is first
    # (inf: never). With ``networks`` (the key's allowlist, () = anywhere), what
    # the request path checks per request, from the principal alone.
    ends_at: float = INF
    networks: tuple = ()
    previous: bool = False  # the key's previous secret (rotated, in its grace period)
    restricted: bool = False  # ends_at or networks say something: the request path checks them

    @property
    def is_admin(self) -> bool:
        return self.kind == ADMIN_KIND

    @property
    def is_anonymous(self) -> bool:
        return self.kind == ANONYMOUS_KIND

    @property
    def is_bootstrap(self) -> bool:
        return self.kind == BOOTSTRAP_KIND

    @property
    def has_identity(self) -> bool:
        """Signed in, by a key, a session or as admin (the bootstrap has none)."""
        return self.key is not None or self.kind == ADMIN_KIND

    @property
    def own_work_only(self) -> int | None:
        """The key pk whose work (prompts, files, sockets) is all this principal
        may see and touch, or None for one that sees everyone's: admins, the
        anonymous of ``enable`` mode and the trusted local caller (see the
        isolation hooks)."""
        if self.key is None or self.kind == ADMIN_KIND:
            return None
        return self.key.pk

    def describe(self) -> dict:
        info = {"kind": self.kind, "via": self.via}
        if self.key is not None:
            info.update(key_id=self.key.key_id, name=self.key.name, scopes=list(self.key.scopes))
        return info


ANONYMOUS = Principal(ANONYMOUS_KIND, "none")
LOCAL_ADMIN = Principal(ADMIN_KIND, "local", level=ADMIN_LEVEL)
LOCAL_BOOTSTRAP = Principal(BOOTSTRAP_KIND, "local")
PASSWORD_ADMIN = Principal(ADMIN_KIND, "session", level=ADMIN_LEVEL)


def for_key(key: KeyRecord, via: str, previous: bool = False) -> Principal:
    """The principal of a key's current secret, or of its previous one (``previous``)."""
    ends_at = INF if key.expires_at is None else key.expires_at
    if previous:
        ends_at = min(ends_at, key.previous_valid_until or 0.0)
    return Principal(ADMIN_KIND if key.is_admin else KEY_KIND, via, key, level_of(key.scopes),
                     ends_at=ends_at, networks=key.networks, previous=previous,
                     restricted=ends_at != INF or bool(key.networks))


def secret_generation(principal: Principal) -> int:
    """Which of its key's secrets a key principal presented (a session remembers it)."""
    return principal.key.generation - 1 if principal.previous else principal.key.generation
