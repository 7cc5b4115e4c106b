"""Each key's WebSockets and prompt messages are its own (issue 14, item 5).

A ``clientId`` belongs to the first principal that uses it: another
principal's handshake with it gets a fresh sid (the owner's socket stays
open), and a prompt naming it is refused 403 NOT_YOUR_CLIENT_ID. Messages
about a prompt (executing, executed, progress, previews...) reach only the
socket of the prompt's own client_id when that socket is the owner's (not
admins' sockets, not anonymous ones); a prompt queued without client_id
sends them to nobody; queue status still goes to everyone.

Real HTTP and WebSockets on the ComfyUI stand-in, in require and enable
mode, with a test node that sends progress and preview frames as ComfyUI's
progress hook does (tests/fixtures/preview_steps_node.py)."""

import asyncio
import os
import random
import struct
import time
from dataclasses import dataclass

import aiohttp
import pytest
import requests

from conftest import package_module

PASSWORD = "correct horse battery staple"
COOKIE = "comfyui_api_auth"
NODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "preview_steps_node.py")
PROMPT_EVENTS = {"executing", "executed", "progress", "progress_state", "execution_start", "execution_cached",
                 "execution_success", "execution_error", "execution_interrupted"}


@dataclass
class Team:
    host: object
    mode: str
    alice: dict   # headers of each principal's credential
    bob: dict
    boss: dict    # an admin-scope key
    admin: dict   # the admin password's session cookie


@pytest.fixture(params=["require", "enable"])
def team(request, make_host):
    host = make_host(env={"COMFYUI_API_AUTH": request.param, "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
                          "COMFYUI_API_AUTH_TRUST_LOCALHOST": "off"},
                     extra_args=["--custom-node", NODE])
    session = requests.Session()
    assert session.post(host.url("/api/auth/login"), json={"password": PASSWORD}).status_code == 200

    def key(name, scopes):
        response = session.post(host.url("/api/keys"), json={"name": name, "rate_limit": 10000, "scopes": scopes})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['api_key']}"}

    return Team(host, request.param, key("alice", ["generate"]), key("bob", ["generate"]), key("boss", ["admin"]),
                {"Cookie": f"{COOKIE}={session.cookies[COOKIE]}"})


def workflow(previews=True):
    """EmptyImage -> ImageBlur (-> PreviewSteps) -> SaveImage; a random colour so nothing is cached."""
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1,
                                                          "color": random.randrange(0xFFFFFF)}},
             "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "iso"}}}
    if previews:
        graph["4"] = {"class_type": "PreviewSteps", "inputs": {"image": ["2", 0], "steps": 3}}
        graph["3"]["inputs"]["images"] = ["4", 0]
    return graph


def ws_url(host, path, client_id=None):
    return f"ws://127.0.0.1:{host.port}{path}" + (f"?clientId={client_id}" if client_id else "")


class Watch:
    """A socket and everything it receives: JSON messages as dicts, binary frames as ("binary", event)."""

    def __init__(self, socket, sid):
        self.socket, self.sid, self.messages = socket, sid, []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        async for message in self.socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(message.json())
            elif message.type == aiohttp.WSMsgType.BINARY:
                self.messages.append(("binary", struct.unpack(">I", message.data[:4])[0]))

    @property
    def closed(self):
        return self.reader.done()

    def about_prompts(self):
        """Prompt messages and binary frames received (what must stay with the prompt's owner)."""
        return [m for m in self.messages if isinstance(m, tuple) or m["type"] in PROMPT_EVENTS]

    def types(self):
        return [m[0] if isinstance(m, tuple) else m["type"] for m in self.messages]

    async def until(self, predicate, timeout=20):
        deadline = time.monotonic() + timeout
        while not any(predicate(m) for m in self.messages):
            assert not self.closed, f"socket closed; got {self.types()}"
            assert time.monotonic() < deadline, f"timed out; got {self.types()}"
            await asyncio.sleep(0.02)


async def watch(client, host, headers, path="/ws", client_id=None):
    socket = await client.ws_connect(ws_url(host, path, client_id), headers=headers)
    first = await socket.receive_json(timeout=5)
    assert first["type"] == "status" and first["data"]["sid"]
    return Watch(socket, first["data"]["sid"])


async def post(host, path, headers, **body):
    def go():
        return requests.post(host.url(path), json=body, headers=headers, timeout=10)
    return await asyncio.get_running_loop().run_in_executor(None, go)


def finished(prompt_id):
    """ComfyUI's last word on a prompt with a client_id (main.py): executing with node None."""
    return lambda m: isinstance(m, dict) and m["type"] == "executing" and m["data"].get("node") is None \
        and m["data"].get("prompt_id") == prompt_id


async def wait_history(host, headers, prompt_id, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = (await asyncio.get_running_loop().run_in_executor(
            None, lambda: requests.get(host.url(f"/api/history/{prompt_id}"), headers=headers, timeout=10))).json()
        if prompt_id in history:
            return history[prompt_id]
        await asyncio.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} never finished")


async def others(team, client):
    """Sockets of everyone but alice: bob (both twins), an admin-scope key, the admin
    password's session, and in enable mode an anonymous caller."""
    host = team.host
    sockets = [await watch(client, host, team.bob), await watch(client, host, team.bob, "/api/ws"),
               await watch(client, host, team.boss, "/api/ws"), await watch(client, host, team.admin)]
    if team.mode == "enable":
        sockets.append(await watch(client, host, {}))
    return sockets


# ---- messages of a prompt go to its owner's socket only ----------------------------------------

@pytest.mark.parametrize("twin", ["", "/api"])
def test_only_alice_gets_the_messages_and_previews_of_her_prompt(team, twin):
    host = team.host

    async def go():
        async with aiohttp.ClientSession() as client:
            alice = await watch(client, host, team.alice, twin + "/ws")
            watchers = await others(team, client)
            response = await post(host, twin + "/prompt", team.alice, prompt=workflow(), client_id=alice.sid)
            assert response.status_code == 200, response.text
            prompt_id = response.json()["prompt_id"]
            await alice.until(finished(prompt_id))
            await asyncio.sleep(0.5)  # anything still in flight to the others lands
            got = alice.types()
            for expected in ("execution_start", "progress_state", "executing", "progress", "executed",
                             "execution_success"):
                assert expected in got, got
            assert ("binary", 1) in alice.messages and ("binary", 3) in alice.messages, got  # previews, text
            executed = [m for m in alice.messages if isinstance(m, dict) and m["type"] == "executed"]
            assert executed[0]["data"]["output"]["images"][0]["filename"].startswith("iso")
            for other in watchers:
                assert other.about_prompts() == [], other.types()
                assert set(other.types()) <= {"status"}
                assert not other.closed

    asyncio.run(go())


def test_a_prompt_without_client_id_sends_its_messages_to_nobody_but_status_to_all(team):
    host = team.host

    async def go():
        async with aiohttp.ClientSession() as client:
            alice = await watch(client, host, team.alice)
            watchers = [alice, *await others(team, client)]
            response = await post(host, "/api/prompt", team.alice, prompt=workflow())
            assert response.status_code == 200, response.text
            item = await wait_history(host, team.alice, response.json()["prompt_id"])
            assert item["status"]["status_str"] == "success"
            await asyncio.sleep(0.5)
            for socket in watchers:
                assert socket.about_prompts() == [], socket.types()
                # the queue's status broadcasts (prompt queued, prompt done) still reach everyone
                assert socket.types().count("status") >= 2, socket.types()

    asyncio.run(go())


def test_principals_without_a_key_get_their_own_prompts_messages(team):
    """The admin password's session and (enable) the anonymous caller own their ids
    and their prompts' messages, and do not get each other's."""
    host = team.host

    async def go():
        async with aiohttp.ClientSession() as client:
            principals = [team.admin] + ([{}] if team.mode == "enable" else [])
            sockets = [await watch(client, host, headers) for headers in principals]
            alice = await watch(client, host, team.alice)
            for headers, socket in zip(principals, sockets):
                response = await post(host, "/prompt", headers, prompt=workflow(), client_id=socket.sid)
                assert response.status_code == 200, response.text
                await socket.until(finished(response.json()["prompt_id"]))
                assert "executed" in socket.types() and ("binary", 1) in socket.messages
            await asyncio.sleep(0.5)
            assert alice.about_prompts() == []
            for socket in sockets:  # each got its own prompt's messages only
                assert len({m["data"]["prompt_id"] for m in socket.about_prompts()
                            if isinstance(m, dict) and "prompt_id" in m["data"]}) == 1

    asyncio.run(go())


# ---- a client id belongs to the first principal that uses it -----------------------------------

def test_a_handshake_with_someone_elses_client_id_gets_a_fresh_sid_and_leaves_hers_alone(team):
    host = team.host

    async def go():
        async with aiohttp.ClientSession() as client:
            alice = await watch(client, host, team.alice)
            intruders = [await watch(client, host, team.bob, "/ws", alice.sid),
                         await watch(client, host, team.bob, "/api/ws", alice.sid),
                         await watch(client, host, team.boss, "/ws", alice.sid),
                         await watch(client, host, team.admin, "/api/ws", alice.sid)]
            if team.mode == "enable":
                intruders.append(await watch(client, host, {}, "/ws", alice.sid))
            for intruder in intruders:
                assert intruder.sid != alice.sid
            assert len({intruder.sid for intruder in intruders}) == len(intruders)
            await asyncio.sleep(0.2)
            assert not alice.closed
            response = await post(host, "/prompt", team.alice, prompt=workflow(), client_id=alice.sid)
            assert response.status_code == 200, response.text
            prompt_id = response.json()["prompt_id"]
            await alice.until(finished(prompt_id))
            assert "executed" in alice.types()
            await asyncio.sleep(0.5)
            for intruder in intruders:
                assert intruder.about_prompts() == [], intruder.types()
            # her own reconnect with her id keeps it (what the frontend does after a drop)
            await alice.socket.close()
            again = await watch(client, host, team.alice, "/api/ws", alice.sid)
            assert again.sid == alice.sid

    asyncio.run(go())


def test_a_prompt_naming_someone_elses_client_id_is_refused_and_not_queued(team):
    host = team.host

    async def go():
        async with aiohttp.ClientSession() as client:
            alice = await watch(client, host, team.alice)
            boss = await watch(client, host, team.boss)
            refusals = [await post(host, "/prompt", team.bob, prompt=workflow(), client_id=alice.sid),
                        await post(host, "/api/prompt", team.bob, prompt=workflow(), client_id=alice.sid),
                        # ComfyUI also takes the client id from extra_data
                        await post(host, "/api/prompt", team.bob, prompt=workflow(),
                                   extra_data={"client_id": alice.sid}),
                        # an admin's socket is its own too: alice may not aim her prompt at it
                        await post(host, "/prompt", team.alice, prompt=workflow(), client_id=boss.sid),
                        await post(host, "/prompt", team.boss, prompt=workflow(), client_id=alice.sid)]
            for response in refusals:
                assert response.status_code == 403, response.text
                assert response.json()["error_code"] == "NOT_YOUR_CLIENT_ID"
            await asyncio.sleep(0.5)
            queue = requests.get(host.url("/api/queue"), headers=team.boss, timeout=10).json()
            history = requests.get(host.url("/api/history"), headers=team.boss, timeout=10).json()
            assert queue["queue_running"] == [] and queue["queue_pending"] == [] and history == {}
            assert alice.about_prompts() == [] and boss.about_prompts() == []
            # an id first named in a prompt is taken too: bob's socket with it gets a fresh sid
            fresh = "f" * 32
            response = await post(host, "/prompt", team.alice, prompt=workflow(), client_id=fresh)
            assert response.status_code == 200, response.text
            bob = await watch(client, host, team.bob, "/ws", fresh)
            assert bob.sid != fresh
            # and bob's own ids work for bob
            response = await post(host, "/api/prompt", team.bob, prompt=workflow(), client_id=bob.sid)
            assert response.status_code == 200, response.text
            await bob.until(finished(response.json()["prompt_id"]))

    asyncio.run(go())


# ---- the ownership memory (core.client_ids), without a server ----------------------------------

def test_client_id_owners_first_use_wins_and_memory_is_bounded():
    client_ids = package_module("core.client_ids")
    owners = client_ids.ClientIdOwners(idle_seconds=100, idle_per_owner=3)
    assert owners.opened("a", 1, 0) and owners.use("a", 1, 1)
    assert not owners.use("a", 2, 1) and not owners.opened("a", 2, 1)
    # an open socket's id is never forgotten
    assert owners.owner("a", 10_000) == 1
    owners.closed("a", 10_000)
    assert owners.owner("a", 10_050) == 1
    assert owners.owner("a", 10_101) is None  # idle too long: forgotten, free again
    assert owners.use("a", 2, 10_101)
    # a principal making up ids evicts only its own oldest idle ones
    owners.use("x", 3, 20_000)
    for n in range(10):
        owners.use(f"mine{n}", 2, 20_000 + n)
    assert owners.owner("x", 20_010) == 3
    assert [owners.owner(f"mine{n}", 20_010) for n in range(10)] == [None] * 7 + [2] * 3
    assert len(owners.owners) == 4 and sum(len(idle) for idle in owners.idle.values()) == 4
    # two sockets on one id: forgotten only after both close and the idle time passes
    assert owners.opened("y", 4, 0) and owners.opened("y", 4, 0)
    owners.closed("y", 1)
    assert owners.owner("y", 500) == 4
    owners.closed("y", 500)
    assert owners.owner("y", 599) == 4 and owners.owner("y", 601) is None
    assert "y" not in owners.owners and 4 not in owners.idle
