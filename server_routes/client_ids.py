"""Each principal's WebSockets and prompt messages are its own.

ComfyUI (``server.py``) keeps one socket per ``clientId`` (``sockets``, sid ->
socket): a handshake with an id already in use replaces that socket, and
execution sends a prompt's messages to the sid its ``client_id`` named, or to
every socket when it named none (``PromptServer.send``, fed by ``send_sync``
from the execution thread through ``messages`` and ``publish_loop``).

- :class:`ClientIds`, a route hook: a ``/ws`` handshake with an id that
  belongs to someone else (core.client_ids) gets a fresh id instead, so the
  owner's socket stays; a handshake without one gets its fresh id from here
  rather than from ComfyUI, so its owner is known. ``POST /prompt`` naming
  someone else's id (``client_id``, or ``extra_data.client_id``, which ComfyUI
  reads too) is refused 403 ``NOT_YOUR_CLIENT_ID``.
- :class:`PromptMessages` wraps ``PromptServer.send``, where every queued
  message and every message of the ``/ws`` handler passes, on the event loop
  and in order: a message about a prompt goes only to the socket its sid
  names, and only when that socket's owner is the prompt's owner (admins'
  sockets too: the frontend draws every ``executed`` onto its own canvas). A
  prompt message ComfyUI sends to every socket (sid None) goes to the
  running prompt's own socket if it has one (nodes send progress text that
  way), else to none (a prompt queued without a ``client_id``). Other
  messages (queue ``status``, ``feature_flags``, other packages' events)
  pass as they are.
"""

import uuid

from ..core.client_ids import prompt_owner_of, who_of
from .responses import error

# Messages about the prompt being run (execution.py, main.py's progress hook,
# comfy_execution/progress.py). Binary frames (previews, progress text) carry
# an int event and are all about the prompt being run.
PROMPT_EVENTS = frozenset({
    "executing", "executed", "progress", "progress_state", "execution_start", "execution_cached",
    "execution_success", "execution_error", "execution_interrupted",
    # API nodes (Gemini, OpenAI chat) show their answers with this, sent to every socket
    "display_component",
})

NOT_YOUR_CLIENT_ID = "NOT_YOUR_CLIENT_ID"


def prompt_client_id(body):
    """The client id ComfyUI's ``post_prompt`` will run the prompt with, or None."""
    if not isinstance(body, dict):
        return None
    if "client_id" in body:
        return body["client_id"]
    extra_data = body.get("extra_data")
    return extra_data.get("client_id") if isinstance(extra_data, dict) else None


class ClientIds:
    def __init__(self, owners, clock):
        self.owners = owners  # core.client_ids.ClientIdOwners
        self.clock = clock

    def wrapper(self, path, method):
        """A route hook (see route_hooks): around ``GET /ws`` and ``POST /prompt``."""
        if path == "/ws" and method == "GET":
            return self.open_socket
        if path == "/prompt" and method == "POST":
            return self.check_prompt
        return None

    async def open_socket(self, request, handler, principal, now):
        who = who_of(principal)
        asked = request.rel_url.query.get("clientId", "")  # what ComfyUI's handler reads
        client_id = asked
        if not asked or not self.owners.opened(asked, who, now):
            client_id = uuid.uuid4().hex  # as ComfyUI makes one
            self.owners.opened(client_id, who, now)
            request = request.clone(rel_url=request.rel_url.update_query(clientId=client_id))
        try:
            return await handler(request)
        finally:
            self.owners.closed(client_id, self.clock())

    async def check_prompt(self, request, handler, principal, now):
        try:
            body = await request.json()  # aiohttp keeps the bytes: ComfyUI reads them again
        except Exception:
            return await handler(request)  # ComfyUI answers what it answers today
        client_id = prompt_client_id(body)
        if isinstance(client_id, str) and client_id and not self.owners.use(client_id, who_of(principal), now):
            return error(403, NOT_YOUR_CLIENT_ID,
                         "this client_id belongs to another key's WebSocket; use your own "
                         "(the sid of your socket's first status message) or a fresh one")
        return await handler(request)


class PromptMessages:
    """The wrapper of ``PromptServer.send``: see the module docstring."""

    def __init__(self, send, socket_owners: dict, prompt_owner):
        self._send = send                   # ComfyUI's own PromptServer.send
        self.socket_owners = socket_owners  # ClientIdOwners.owners: client id -> who
        self.prompt_owner = prompt_owner    # JobTracker.owner: prompt id -> (key pk or None, kind)
        # The prompt the last prompt message named, and the sid ComfyUI sent that
        # message to (its client_id; None for a prompt queued without one).
        # Previews, progress text and the reconnect "executing" name no prompt:
        # they follow that prompt's execution_start / progress_state in the queue.
        self.current = None
        self.current_sid = None

    async def send(self, event, data, sid=None):
        if event in PROMPT_EVENTS or type(event) is int:
            sid = self._target(data, sid)
            if sid is None:
                return
        await self._send(event, data, sid)

    def _target(self, data, sid):
        """The sid a prompt message may go to, or None to send it nowhere."""
        prompt_id = data.get("prompt_id") if type(data) is dict else None
        if type(prompt_id) is not str:
            prompt_id = self.current
        elif prompt_id != self.current or sid is not None:
            self.current, self.current_sid = prompt_id, sid
        if sid is None:
            # ComfyUI broadcasts these for a prompt queued without a client_id, and
            # nodes send progress text without a sid: at most the prompt's own socket.
            if prompt_id is None or prompt_id != self.current:
                return None
            sid = self.current_sid
            if sid is None:
                return None
        try:
            who = self.socket_owners.get(sid)
        except TypeError:  # an unhashable sid from another package: no socket has it
            return None
        if who is None or who != prompt_owner_of(self.prompt_owner(prompt_id)):
            return None
        return sid


def route_prompt_messages(prompt_server, socket_owners, prompt_owner):
    """Put :class:`PromptMessages` in front of the server's ``send`` (an instance attribute,
    so ``publish_loop`` and the ``/ws`` handler, which call ``self.send``, go through it)."""
    messages = PromptMessages(prompt_server.send, socket_owners, prompt_owner)
    prompt_server.send = messages.send
    return messages
