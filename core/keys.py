"""API key format: ``comfy_`` + 40 base62 random characters + 6-character checksum.

The checksum (CRC32 of the random part, in base62) lets a secret scanner or
this package reject a mistyped or invented key without a database lookup, as
GitHub tokens do. Only the SHA-256 of the whole key is ever stored.
"""

import secrets
import zlib
from typing import NamedTuple

from .hashing import fast_sha256, secret_digest, secret_hex  # noqa: F401 (fast_sha256: the middleware's)

PREFIX = "comfy_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 40  # 40 * log2(62) ~ 238 bits
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
KEY_ID_LENGTH = 16
_BASE62_SET = frozenset(BASE62)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def generate_key() -> str:
    random_part = "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    return PREFIX + random_part + _checksum(random_part)


def generate_key_id() -> str:
    """Public identifier of a key; safe to show, log and put in URLs."""
    return "".join(secrets.choice(BASE62) for _ in range(KEY_ID_LENGTH))


def is_well_formed(key: str) -> bool:
    """Prefix, length, alphabet and checksum: a cheap offline check.

    Not used on the hot path (a hash lookup decides there); it turns a
    failed lookup into a more helpful error code.
    """
    if len(key) != KEY_LENGTH or not key.startswith(PREFIX):
        return False
    body = key[len(PREFIX):]
    if not _BASE62_SET.issuperset(body):
        return False
    random_part, checksum = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
    return secrets.compare_digest(_checksum(random_part), checksum)


# What the database stores (the SHA-256 of the whole key, in hex) and what the
# in-memory index holds (the same as raw bytes): see core.hashing.
hash_key = secret_hex
digest_key = secret_digest


def display_prefix(key: str) -> str:
    """What the panel shows to tell keys apart: the prefix and 4 characters."""
    return key[: len(PREFIX) + 4]


class NewKey(NamedTuple):
    plaintext: str  # shown once, never stored
    key_id: str
    key_hash: str
    prefix: str

    @property
    def stored(self) -> dict:
        """What the database keeps of it: ``repository.create_key(database, **key.stored, ...)``."""
        return {"key_id": self.key_id, "key_hash": self.key_hash, "prefix": self.prefix}


def new_key() -> NewKey:
    """A fresh key with its public id, hash and display prefix: the one way a
    key is made (server, command line, bench)."""
    plaintext = generate_key()
    return NewKey(plaintext, generate_key_id(), hash_key(plaintext), display_prefix(plaintext))
