"""Each key has its own ComfyUI user: its own workflows, settings and user.css.

ComfyUI's user manager (``app/user_manager.py``) keeps each user's files in
``<user dir>/<user id>/`` and takes the user from the ``comfy-user`` request
header, but only when ``args.multi_user`` is on. So, while the package is on:

- ``args.multi_user`` is turned on; whether the operator had it on
  (``--multi-user``) is remembered and decides what non-key callers get.
- On every per-user route (the route table's ``per_user`` note: settings,
  userdata, v2 userdata, users) a key holder's request reaches ComfyUI as a
  copy with ``comfy-user`` set to the key's user (``core.comfy_user_names``),
  whatever the client sent; the user is added to ComfyUI's user table first,
  so a key's first request (after a restart too) never meets "unknown user"
  (a 401 on ``/settings``, which starts the frontend's reload loop).
- Admins (a password session, an admin-scope key, local trust), anonymous
  callers and the local bootstrap keep ``default``: a ``comfy-user`` they send
  is ignored (by the guarded look-up below), unless the operator ran
  ``--multi-user`` (then it counts, as in ComfyUI, except a key's user id,
  which is refused with 403).
- ``GET /users`` answers the single-user shape (no user list, so no
  user-selection screen), except to admins when the operator ran
  ``--multi-user``: they get ComfyUI's list without the keys' users.
- ComfyUI's ``get_request_user_id`` is guarded for every other caller of it
  (custom nodes, newer ComfyUI's own routes): a key's user only for a request
  this hook stamped, and ``default`` for anyone else unless the operator ran
  ``--multi-user`` (as if multi-user were still off).

Key users are added to ComfyUI's table in memory only, not written to
``users.json``: the folder follows from the key's id, so registering again on
first use after a restart finds the same files; nothing needs keeping, and a
deleted key leaves no entry behind. (ComfyUI itself rewrites ``users.json``
from its whole table when someone creates a user through ``POST /users``, an
admin route; such entries change nothing: they are never listed and never
accepted from a client.)

Only per-user routes pay for this (one copy of the request); the others,
such as ``GET /object_info``, are untouched.
"""

from aiohttp import web
from multidict import CIMultiDict, istr

from ..core import route_table
from ..core.comfy_user_names import DEFAULT_USER, is_key_user, key_user_id, without_key_users
from .responses import error

COMFY_USER = istr("comfy-user")
# Set on the copy of a key's request: the guarded get_request_user_id trusts only this.
STAMP = "comfyui_api_auth_comfy_user"
SINGLE_USER = {"storage": "server", "migrated": True}
FOREIGN_USER_MESSAGE = "that ComfyUI user belongs to an API key; sign in with the key to use it"


class ComfyUsers:
    def __init__(self, user_manager, operator_multi_user: bool):
        self.user_manager = user_manager  # ComfyUI's UserManager, or None (no user routes then)
        self.operator_multi_user = operator_multi_user

    @classmethod
    def install(cls, prompt_server, args=None):
        """Turn ComfyUI's multi-user mode on, guard its user look-up and return the hook."""
        if args is None:
            try:
                from comfy.cli_args import args
            except ImportError:
                args = None
        operator_multi_user = bool(getattr(args, "multi_user", False))
        hook = cls(getattr(prompt_server, "user_manager", None), operator_multi_user)
        if args is not None and hook.user_manager is not None:
            args.multi_user = True
            hook.guard()
        return hook

    def guard(self):
        """Wrap the user manager's ``get_request_user_id`` (see the module's note)."""
        manager = self.user_manager
        original = manager.get_request_user_id
        operator_multi_user = self.operator_multi_user

        def get_request_user_id(request):
            try:
                stamped = request.get(STAMP)
            except (AttributeError, TypeError):
                stamped = None
            if stamped is not None:
                return stamped
            if not operator_multi_user:
                if DEFAULT_USER not in manager.users:
                    raise KeyError("Unknown user: " + DEFAULT_USER)
                return DEFAULT_USER
            sent = request.headers.get(COMFY_USER)
            if sent is not None and is_key_user(sent):
                raise KeyError("Unknown user: " + sent)
            return original(request)

        manager.get_request_user_id = get_request_user_id

    def wrapper(self, path, method):
        """A route hook (see route_hooks): ``GET /users`` and the per-user routes."""
        if self.user_manager is None:
            return None
        if path == "/users" and method in ("GET", "HEAD"):
            return self.users_answer
        found = route_table.lookup(path, method)
        if found is not None and route_table.PER_USER in found.notes:
            return self.own_user
        return None

    def user_of(self, principal):
        """The key's user for a key holder (a key, or a session opened with one); None for
        admins (an admin-scope key too), anonymous callers and the local bootstrap."""
        key = principal.key
        if key is None or principal.is_admin:
            return None
        user = key_user_id(key.key_id)
        users = self.user_manager.users
        if user not in users:
            users[user] = user
        return user

    async def own_user(self, request, handler, principal, now):
        user = self.user_of(principal)
        if user is not None:
            return await handler(as_user(request, user))
        # Anyone else: the guarded look-up answers default whatever they send,
        # unless the operator ran --multi-user; then a key's user is refused here
        # (ComfyUI's "unknown user" would be a 401 on /settings: the reload loop).
        if self.operator_multi_user:
            sent = request.headers.get(COMFY_USER)
            if sent is not None and is_key_user(sent):
                return error(403, "COMFY_USER_REFUSED", FOREIGN_USER_MESSAGE)
        return await handler(request)

    async def users_answer(self, request, handler, principal, now):
        if self.operator_multi_user and self.user_of(principal) is None:
            return web.json_response({"storage": "server", "users": without_key_users(self.user_manager.users)})
        return web.json_response(SINGLE_USER)


def as_user(request, user):
    """A copy of the request that ComfyUI reads as ``user``'s."""
    headers = CIMultiDict(request.headers)
    headers[COMFY_USER] = user  # replaces every comfy-user the client sent
    copy = request.clone(headers=headers)
    copy[STAMP] = user
    return copy
