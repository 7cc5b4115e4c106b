"""Who is calling: anonymous, a key holder, an admin, or the local bootstrap."""

from dataclasses import dataclass, field

from .scopes import ADMIN, ADMIN_LEVEL, NO_LEVEL, level_of

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

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes


@dataclass(frozen=True)
class Principal:
    kind: str
    via: str  # "header", "session", "local" or "none"
    key: KeyRecord | None = None
    # What it may reach (core.scopes.LEVELS): a key's highest scope, worked out
    # once when the principal is built; the request path compares it to a route's.
    level: int = NO_LEVEL

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


def for_key(key: KeyRecord, via: str) -> Principal:
    return Principal(ADMIN_KIND if key.is_admin else KEY_KIND, via, key, level_of(key.scopes))
