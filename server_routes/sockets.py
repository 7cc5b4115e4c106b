"""ComfyUI WebSockets opened with a key or a browser session, so that taking
the key or the session away also ends them.

ComfyUI's ``/ws`` handler lasts as long as its socket, inside the middleware's
``await handler(request)``, and keeps the socket in ``PromptServer.sockets``
(sid -> ``WebSocketResponse``). The middleware runs that handler through
:meth:`OpenSockets.run`, which notes who opened the socket under the request's
task; a socket's ``task`` property names the same task, which is how a sweep
finds a holder's sockets among ComfyUI's.

A sweep runs after every key or session change this process makes and on
every refresh tick (changes made by other processes, sessions running out).
A socket whose holder no longer gets in is sent one message saying why,
``{"type": "api_auth_revoked", "data": {"reason": ..., "login_url": "/login"}}``,
then closed with code 4401. A new reason to end access (a key that expires,
the grace period of a rotated key) is one more case in :func:`revocation`.
"""

import asyncio
import logging

from ..core.hashing import secret_hex
from .identity import SESSION_COOKIE

log = logging.getLogger("comfyui_api_auth")

MESSAGE_TYPE = "api_auth_revoked"
CLOSE_CODE = 4401  # an application close code (4000-4999); reads as HTTP's 401
LOGIN_URL = "/login"

KEY_REVOKED = "key_revoked"
KEY_DISABLED = "key_disabled"
SIGNED_OUT = "signed_out"
SESSION_EXPIRED = "session_expired"


def revocation(keys, holder, now):
    """Why a socket's holder no longer gets in, or None while it still does.
    ``holder`` is (key pk or None, session token hash or None)."""
    key_pk, session_hash = holder
    if key_pk is not None:
        record = keys.by_pk.get(key_pk)
        if record is None:
            return KEY_REVOKED
        if not record.is_active:
            return KEY_DISABLED
    if session_hash is not None:
        session = keys.sessions.get(session_hash)  # (kind, key pk, expires at)
        if session is None:
            return SIGNED_OUT
        if session[2] <= now:
            return SESSION_EXPIRED
    return None


class OpenSockets:
    def __init__(self, keys, clock, comfy_sockets):
        self.keys = keys    # the KeyCache: which keys and sessions still get in
        self.clock = clock
        self.comfy_sockets = comfy_sockets  # () -> ComfyUI's {sid: WebSocketResponse}
        self.holders: dict = {}             # request task -> (key pk or None, session token hash or None)
        self._closing: set = set()          # close tasks under way (kept so they are not collected)

    def wrapper(self, path, method):
        """A route hook (see route_hooks): the registry runs around ``GET /ws``."""
        return self.run if path == "/ws" and method == "GET" else None

    async def run(self, request, handler, principal, now):
        """Run ComfyUI's ``/ws`` handler with the socket's holder noted (the middleware's
        ``around`` for ``GET /ws``). Trusted local and anonymous sockets are not noted."""
        if principal.via == "session":
            key_pk = principal.key.pk if principal.key is not None else None
            holder = (key_pk, secret_hex(request.cookies[SESSION_COOKIE]))
        elif principal.key is not None:
            holder = (principal.key.pk, None)
        else:
            return await handler(request)
        task = request.task
        self.holders[task] = holder
        try:
            return await handler(request)
        finally:
            self.holders.pop(task, None)

    def sweep(self):
        """Close every noted socket whose holder no longer gets in."""
        if not self.holders:
            return
        holders, keys, now = self.holders, self.keys, self.clock()
        for socket in list(self.comfy_sockets().values()):
            task = getattr(socket, "task", None)  # the task serving its request (aiohttp)
            holder = holders.get(task)
            if holder is None:
                continue
            reason = revocation(keys, holder, now)
            if reason is not None:
                del holders[task]
                closing = asyncio.ensure_future(self._close(socket, reason))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(socket, reason):
        try:
            await socket.send_json({"type": MESSAGE_TYPE, "data": {"reason": reason, "login_url": LOGIN_URL}})
        except (ConnectionError, RuntimeError):
            pass  # closing already; the close below still ends it
        try:
            await socket.close(code=CLOSE_CODE, message=reason.encode())
        except (ConnectionError, RuntimeError) as error:
            log.warning("[api-auth] closing a revoked WebSocket failed: %s", error)
