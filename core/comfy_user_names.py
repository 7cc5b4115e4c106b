"""The ComfyUI user id of each key: one user folder per key under ComfyUI's
user directory (``<user dir>/<id>/``: workflows, ``comfy.settings.json``,
``user.css``).

The id is derived from the key's public ``key_id`` alone, so after a restart
the key finds the same folder again without anything stored.

Why it cannot collide or escape:

- ComfyUI makes user ids as ``re.sub("[^a-zA-Z0-9-_]+", "-", name) + "_" +
  uuid4`` (``app/user_manager.py add_user``): never a ``.``. Every id here has
  one, so no user ComfyUI creates (or has created) is ever a key's user.
- No ``/``, ``\\`` or dot segment: the id is one plain folder name, so the
  folder is always directly inside the user directory.
- It does not start with ``__``: newer ComfyUI refuses such ids as "system
  users" (``folder_paths.SYSTEM_USER_PREFIX``; the package's own data folder
  ``__api_auth`` is one).
"""

PREFIX = "apikey."
# A key_id outside [A-Za-z0-9] (never made by core.keys, but stored ids are
# only checked for length) is written as hex after this marker; "-" never
# occurs in a plain key_id, so the two forms cannot meet.
HEX_MARKER = "hex-"
DEFAULT_USER = "default"


def key_user_id(key_id: str) -> str:
    """The ComfyUI user id of the key with this ``key_id``."""
    if key_id and key_id.isascii() and key_id.isalnum():
        return PREFIX + key_id
    return PREFIX + HEX_MARKER + key_id.encode("utf-8", "surrogatepass").hex()


def is_key_user(user_id: str) -> bool:
    """Whether a user id (as a client may send it in ``comfy-user``) names a key's user."""
    # Folded: on a case-insensitive disk "APIKEY.x" is the same folder.
    return user_id[:len(PREFIX)].lower() == PREFIX


def without_key_users(users: dict) -> dict:
    """ComfyUI's user table (id -> name) without the keys' users."""
    return {user_id: name for user_id, name in users.items() if not is_key_user(user_id)}
