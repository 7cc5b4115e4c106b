"""SHA-256 of a secret's text: the one way the package hashes API keys,
session tokens and the setup code. Only these hashes are ever kept.

Text is encoded as UTF-8 with ``surrogatepass``, so any text a header or a
JSON body can carry hashes without an error (a lone surrogate cannot match
a secret this package made, which are ASCII).
"""

import hashlib

try:  # CPython's builtin SHA-256 skips OpenSSL's per-call setup: cheaper for one short secret
    from _sha2 import sha256 as fast_sha256  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256 as fast_sha256  # Python 3.11
    except ImportError:
        fast_sha256 = hashlib.sha256


def secret_hex(text: str) -> str:
    """The SHA-256 in hex: what the database stores (keys, session tokens)."""
    return fast_sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def secret_digest(text: str) -> bytes:
    """The same SHA-256 as raw bytes, as the in-memory indexes hold it (no hex
    to build or hash on the request path)."""
    return fast_sha256(text.encode("utf-8", "surrogatepass")).digest()
