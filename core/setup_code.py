"""The one-time setup code a server prints while no admin exists (as Jupyter
prints its token): whoever can read the console may set the admin password
with it on the login page.

80 random bits, shown as four groups of four characters from Crockford's
base32 (no I, L, O, U), so it survives being typed from a screen. Only its
SHA-256 is kept; a typed code is compared in constant time.
"""

import hmac
import secrets

from .hashing import secret_digest

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 16  # characters: 16 x 5 = 80 bits
TYPO_FIXES = str.maketrans({"I": "1", "L": "1", "O": "0"})


def normalize(text: str) -> str:
    """What a person typed, as the code is stored: upper case, no dashes or spaces."""
    return "".join(text.upper().split()).replace("-", "").translate(TYPO_FIXES)


def new_code() -> tuple[str, bytes]:
    """(the code to show, the digest to keep)."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    shown = "-".join(raw[i:i + 4] for i in range(0, LENGTH, 4))
    return shown, secret_digest(raw)


def matches(typed: str, digest: bytes) -> bool:
    return hmac.compare_digest(secret_digest(normalize(typed)), digest)
