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
then closed with code 4401. Every reason to end access is one case in
:func:`revocation`.
"""

import asyncio
import logging

from ..core.addresses import address_allowed
from ..core.hashing import secret_hex
from ..core.principals import secret_generation
from .identity import SESSION_COOKIE, client_address

log = logging.getLogger("comfyui_api_auth")

MESSAGE_TYPE = "api_auth_revoked"
CLOSE_CODE = 4401  # an application close code (4000-4999); reads as HTTP's 401
LOGIN_URL = "/login"

KEY_REVOKED = "key_revoked"
KEY_DISABLED = "key_disabled"
SIGNED_OUT = "signed_out"
SESSION_EXPIRED = "session_expired"
KEY_EXPIRED = "key_expired"
KEY_ROTATED = "key_rotated"  # opened with a secret the key no longer has (rotated, grace over)
IP_NOT_ALLOWED = "ip_not_allowed"  # the key's allowlist no longer has the socket's address


def revocation(keys, holder, now):
    """Why a socket's holder no longer gets in, or None while it still does.
    ``holder`` is (key pk or None, session token hash or None, the generation
    of the key's secret it was opened with, the client's address)."""
    key_pk, session_hash, generation, client = holder
    if key_pk is not None:
        principal = keys.key_principal(key_pk)
        if principal is None:
            return KEY_REVOKED
        record = principal.key
        if not record.is_active:
            return KEY_DISABLED
        if record.is_expired(now):
            return KEY_EXPIRED
        if generation != record.generation and not (
                generation == record.generation - 1 and (record.previous_valid_until or 0.0) > now):
            return KEY_ROTATED
        if principal.networks and not address_allowed(principal.networks, client):
            return IP_NOT_ALLOWED
    if session_hash is not None:
        session = keys.sessions.get(session_hash)  # (kind, key pk, expires at, key generation)
        if session is None:
            return SIGNED_OUT
        if session[2] <= now:
            return SESSION_EXPIRED
    return None


class OpenSockets:
    def __init__(self, keys, clock, comfy_sockets, trusted_proxies=lambda: None):
        self.keys = keys    # the KeyCache: which keys and sessions still get in
        self.clock = clock
        self.trusted_proxies = trusted_proxies  # () -> the runtime's TrustedProxies (a key's allowlist)
        self.comfy_sockets = comfy_sockets  # () -> ComfyUI's {sid: WebSocketResponse}
        self.holders: dict = {}             # request task -> holder (see revocation)
        self._closing: set = set()          # close tasks under way (kept so they are not collected)

    def wrapper(self, path, method):
        """A route hook (see route_hooks): the registry runs around ``GET /ws``."""
        return self.run if path == "/ws" and method == "GET" else None

    async def run(self, request, handler, principal, now):
        """Run ComfyUI's ``/ws`` handler with the socket's holder noted (the middleware's
        ``around`` for ``GET /ws``). Trusted local and anonymous sockets are not noted."""
        key = principal.key
        if principal.via != "session" and key is None:
            return await handler(request)
        session_hash = secret_hex(request.cookies[SESSION_COOKIE]) if principal.via == "session" else None
        if key is None:
            holder = (None, session_hash, 0, "")
        else:
            holder = (key.pk, session_hash, secret_generation(principal),
                      client_address(request, self.trusted_proxies()))
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
