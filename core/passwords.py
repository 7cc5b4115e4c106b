"""Admin password hashing with bcrypt. Slow by design: never on the event loop."""

import bcrypt

ROUNDS = 12


def hash_password(password: str) -> bytes:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(ROUNDS))


def check_password(password: str, password_hash: bytes | None) -> bool:
    if not password_hash:
        return False
    try:
        return bcrypt.checkpw(password.encode("utf-8", "surrogatepass"), password_hash)
    except ValueError:
        return False
