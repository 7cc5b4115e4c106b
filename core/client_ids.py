"""Who owns each ComfyUI ``clientId``: the first principal that uses it.

A client id names a WebSocket (``/ws?clientId=...``; ComfyUI sends a prompt's
messages to the socket whose id the prompt named as ``client_id``). Ids are
chosen by the client (the browser adopts the one the server gives its first
socket; scripts pick a uuid), so the first principal that uses an id, on
``/ws`` or in a prompt, owns it; others cannot take it over.

An owner (``who``) is a key pk, or the principal kind for principals without
a key (the admin password, the trusted local caller, the anonymous of
``enable`` mode): the same value :func:`prompt_owner_of` gives a prompt's
owner, so the two compare with ``==``.

Memory is bounded: an id is remembered while a socket is open with it, then
for ``IDLE_SECONDS`` after its last use (socket closed, prompt queued); at
most ``IDLE_PER_OWNER`` such idle ids per owner, the least recently used
forgotten first. Forgetting only lets the id be claimed again (by its
owner's next reconnect, or by someone who knows it); messages about a prompt
still reach only a socket of the prompt's owner (server_routes/client_ids).
"""

from collections import OrderedDict

IDLE_SECONDS = 3600.0   # an id with no open socket is forgotten an hour after its last use
IDLE_PER_OWNER = 1000   # idle ids remembered per owner; a key making up ids evicts only its own


def who_of(principal):
    """The owner a principal's client ids and prompts belong to."""
    key = principal.key
    return key.pk if key is not None else principal.kind


def prompt_owner_of(owner):
    """The owner of a prompt from ``JobTracker.owner`` ((key pk or None, kind)), or None."""
    if owner is None:
        return None
    key_pk, kind = owner
    return key_pk if key_pk is not None else kind


class ClientIdOwners:
    def __init__(self, idle_seconds: float = IDLE_SECONDS, idle_per_owner: int = IDLE_PER_OWNER):
        self.idle_seconds = idle_seconds
        self.idle_per_owner = idle_per_owner
        self.owners: dict = {}  # client id -> who (read per message, with one dict lookup)
        self.open: dict = {}    # client id -> sockets open with it now
        self.idle: dict = {}    # who -> OrderedDict(client id -> last used), its ids with no socket open

    def owner(self, client_id: str, now: float):
        """The id's owner, or None if nobody owns it (any more)."""
        who = self.owners.get(client_id)
        if who is not None and client_id not in self.open:
            self._forget_stale(who, now)
            return self.owners.get(client_id)
        return who

    def use(self, client_id: str, who, now: float) -> bool:
        """``who`` uses the id (a prompt names it): True if it is now or was
        already theirs, False if it belongs to someone else."""
        owner = self.owner(client_id, now)
        if owner is None:
            self.owners[client_id] = who
        elif owner != who:
            return False
        if client_id not in self.open:
            self._touch_idle(who, client_id, now)
        return True

    def opened(self, client_id: str, who, now: float) -> bool:
        """``who`` opens a socket with the id; False (nothing noted) if it is someone else's."""
        if not self.use(client_id, who, now):
            return False
        idle = self.idle.get(who)
        if idle is not None and idle.pop(client_id, None) is not None and not idle:
            del self.idle[who]
        self.open[client_id] = self.open.get(client_id, 0) + 1
        return True

    def closed(self, client_id: str, now: float):
        """A socket opened with the id (``opened`` said True) has ended."""
        left = self.open.get(client_id, 0) - 1
        if left > 0:
            self.open[client_id] = left
            return
        self.open.pop(client_id, None)
        who = self.owners.get(client_id)
        if who is not None:
            self._touch_idle(who, client_id, now)

    def _touch_idle(self, who, client_id, now):
        idle = self.idle.get(who)
        if idle is None:
            idle = self.idle[who] = OrderedDict()
        idle[client_id] = now
        idle.move_to_end(client_id)
        self._forget_stale(who, now)

    def _forget_stale(self, who, now):
        """Forget the owner's idle ids used too long ago, and the oldest beyond the cap."""
        idle = self.idle.get(who)
        if idle is None:
            return
        oldest_kept = now - self.idle_seconds
        while idle:
            client_id, used = next(iter(idle.items()))
            if used > oldest_kept and len(idle) <= self.idle_per_owner:
                break
            del idle[client_id]
            del self.owners[client_id]
        if not idle:
            del self.idle[who]
