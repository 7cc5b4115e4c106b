"""Each key's files are its own (issue 14, outputs and inputs), over real HTTP
on the ComfyUI stand-in: /view, workflows that name files, /object_info's
file lists and uploads, for keys alice and bob, an admin key, an admin
session and anonymous callers, in enable and require mode, across a restart.
"""

import asyncio
import json
import os
import struct
import time
import uuid
import zlib

import aiohttp
import pytest
import requests

from conftest import ON_POSTGRES, drop_postgres_database, fresh_postgres_database

PASSWORD = "correct horse battery staple"
FAST = {"COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2", "COMFYUI_API_AUTH_REFRESH_INTERVAL": "0.5"}


def png(color=(255, 0, 0), size=4) -> bytes:
    """A small 8-bit RGB PNG (LoadImage reads it)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(color) * size for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def image_workflow(prefix="pic", source=None, color=0x336699):
    """EmptyImage (or LoadImage of ``source``) -> ImageBlur -> SaveImage: needs no model."""
    first = ({"class_type": "LoadImage", "inputs": {"image": source}} if source is not None else
             {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}})
    return {"1": first,
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}}


class World:
    """A host with keys alice and bob, an admin key and an admin session."""

    def __init__(self, host, mode, keys=None):
        self.host, self.mode = host, mode
        self.admin = requests.Session()
        assert self.admin.post(host.url("/api/auth/login"), json={"password": PASSWORD}).status_code == 200
        self.keys = dict(keys or {})
        for name, scopes in (("alice", ["generate"]), ("bob", ["generate"]), ("boss", ["admin"])):
            if name in self.keys:
                continue
            answer = self.admin.post(host.url("/api/keys"), json={"name": name, "scopes": scopes, "rate_limit": 100000})
            assert answer.status_code == 200, answer.text
            self.keys[name] = answer.json()

    def headers(self, name):
        return {"Authorization": f"Bearer {self.keys[name]['api_key']}"}

    def get(self, who, path, **kw):
        """GET as alice, bob, boss (admin key), admin (session) or anonymous."""
        kw.setdefault("timeout", 10)
        if who == "admin":
            return self.admin.get(self.host.url(path), **kw)
        return requests.get(self.host.url(path), headers=self.headers(who) if who != "anonymous" else {}, **kw)

    def post(self, who, path, **kw):
        kw.setdefault("timeout", 10)
        if who == "admin":
            return self.admin.post(self.host.url(path), **kw)
        return requests.post(self.host.url(path), headers=self.headers(who) if who != "anonymous" else {}, **kw)

    def queue(self, who, workflow, **extra):
        return self.post(who, "/prompt", json={"prompt": workflow, **extra})

    def run(self, who, workflow, **extra):
        """Queue and wait: the history item (read by the admin)."""
        answer = self.queue(who, workflow, **extra)
        assert answer.status_code == 200, answer.text
        prompt_id = answer.json()["prompt_id"]
        deadline = time.time() + 20
        while time.time() < deadline:
            history = self.admin.get(self.host.url(f"/api/history/{prompt_id}"), timeout=10).json()
            item = history.get(prompt_id)
            if item and item["status"].get("completed") is not None:
                assert item["status"]["status_str"] == "success", item["status"]
                return item
            time.sleep(0.05)
        raise AssertionError(f"prompt {prompt_id} did not finish")

    def produce(self, who, prefix="pic", color=0x336699, **extra):
        """Run the image workflow: the output file's (filename, subfolder)."""
        image = self.run(who, image_workflow(prefix, color=color), **extra)["outputs"]["3"]["images"][0]
        return image["filename"], image["subfolder"]

    def upload(self, who, name, data, path="/upload/image", **fields):
        return self.post(who, path, files={"image": (name, data, "image/png")},
                         data={key: str(value) for key, value in fields.items()})

    def view(self, who, filename, twin="", **params):
        return self.get(who, f"{twin}/view", params={"filename": filename, **params})

    def settle(self):
        """Let the package write what it learnt (flush interval 0.2 s) and the job watcher poll (1 s)."""
        time.sleep(1.5)


@pytest.fixture(params=["enable", "require"])
def world(request, make_host):
    mode = request.param
    host = make_host(env={"COMFYUI_API_AUTH": mode, "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
                          "COMFYUI_API_AUTH_TRUST_LOCALHOST": "off", **FAST}, extra_args=["--enable-assets"])
    return World(host, mode)


def refused(answer):
    assert answer.status_code == 403, (answer.status_code, answer.text[:300])
    assert answer.json()["error_code"] == "NOT_YOUR_FILE"


def loaders_list(answer):
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()["LoadImage"]["input"]["required"]["image"][0]


# ---- /view ------------------------------------------------------------------------------------

def test_view_answers_only_the_key_whose_prompt_made_the_file_also_after_a_restart(world):
    alice_file, subfolder = world.produce("alice")
    assert subfolder == ""
    for twin in ("", "/api"):
        refused(world.view("bob", alice_file, twin, type="output"))
        refused(world.view("bob", alice_file, twin))  # type defaults to output
        assert world.view("alice", alice_file, twin, type="output").status_code == 200
        assert world.view("boss", alice_file, twin, type="output").status_code == 200
        assert world.view("admin", alice_file, twin, type="output").status_code == 200
    anonymous = world.view("anonymous", alice_file, type="output").status_code
    assert anonymous == (200 if world.mode == "enable" else 401)
    # HEAD would tell bob the file's size: refused too.
    head = requests.head(world.host.url("/view"), params={"filename": alice_file}, headers=world.headers("bob"))
    assert head.status_code == 403

    # An output no key made (the admin's) is nobody's to read; a name that does not
    # exist is refused the same way, so bob cannot probe for names.
    admin_file, _ = world.produce("admin", prefix="operator")
    refused(world.view("bob", admin_file))
    refused(world.view("alice", admin_file))
    assert world.view("boss", admin_file).status_code == 200
    refused(world.view("bob", "nothing_here_00001_.png"))

    world.settle()
    world.host.stop()
    world.host.start()
    refused(world.view("bob", alice_file, type="output"))
    assert world.view("alice", alice_file, type="output").status_code == 200
    assert world.view("admin", alice_file, type="output").status_code == 200


def test_view_spellings_of_another_keys_file_are_refused(world):
    name, subfolder = world.produce("alice", prefix="deep/pic")
    top, _ = world.produce("alice", prefix="top")
    output = os.path.join(world.host.workdir, "output")
    assert subfolder == "deep"
    spellings = [
        {"filename": name, "subfolder": "deep"},
        {"filename": name, "subfolder": "deep/"},
        {"filename": name, "subfolder": "./deep"},
        {"filename": name, "subfolder": "deep/../deep"},
        {"filename": name, "subfolder": os.path.join(output, "deep")},  # absolute, inside output
        {"filename": name + " [output]", "subfolder": "deep", "type": "input"},
        {"filename": name + " [output]", "subfolder": "deep", "type": "nonsense"},
        {"filename": top, "subfolder": "deep/.."},
        {"filename": top, "subfolder": output},
        {"filename": top + " [output]"},
        {"filename": "whatever/" + top},  # ComfyUI keeps only the base name
    ]
    for params in spellings:
        assert world.get("alice", "/view", params=params).status_code == 200, params
        refused(world.get("bob", "/view", params=params))
    # Percent-encoded spellings reach ComfyUI decoded: the same file, the same answer.
    raw = f"/api/view?filename={top}&subfolder=deep%2F%2E%2E&type=%6Futput"
    assert world.get("alice", raw).status_code == 200
    refused(world.get("bob", raw))
    # What ComfyUI itself refuses stays refused, with its own answer.
    assert world.get("bob", "/view", params={"filename": "../output/" + top, "type": "input"}).status_code == 400
    assert world.get("bob", "/view", params={"filename": "/etc/passwd"}).status_code == 400
    assert world.get("bob", "/view", params={"filename": top, "type": "input",
                                             "subfolder": "../output"}).status_code == 403
    # Newer ComfyUI serves a file by its content hash (its asset list names them):
    # a key may not name a file that way, whoever's it is.
    for hashed in ("blake3:" + "ab" * 32, "BLAKE3:" + "ab" * 32):
        refused(world.get("bob", "/view", params={"filename": hashed}))


def test_a_node_output_is_viewable_by_its_key_as_soon_as_the_executed_message_arrives(world):
    """The client fetches a node's image when ``executed`` arrives, before the
    job watcher sees the prompt in the history."""
    client_id = uuid.uuid4().hex

    async def go():
        async with aiohttp.ClientSession() as client:
            socket = await client.ws_connect(f"ws://127.0.0.1:{world.host.port}/ws?clientId={client_id}",
                                             headers=world.headers("alice"))
            workflow = image_workflow("live")
            # A slow branch keeps the prompt running after SaveImage has sent its image.
            workflow["4"] = {"class_type": "SlowNode", "inputs": {"seconds": 2.0, "text": "later"}}
            workflow["5"] = {"class_type": "SaveText", "inputs": {"text": ["4", 0], "filename_prefix": "later"}}
            answer = world.queue("alice", workflow, client_id=client_id)
            assert answer.status_code == 200, answer.text
            while True:
                message = await socket.receive(timeout=20)
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if data["type"] == "executed" and "images" in data["data"]["output"]:
                    image = data["data"]["output"]["images"][0]
                    async with client.get(world.host.url("/view"), params={"filename": image["filename"]},
                                          headers=world.headers("alice")) as view:
                        status = view.status
                    await socket.close()
                    return image["filename"], status
    filename, status = asyncio.run(go())
    assert status == 200
    refused(world.view("bob", filename))


# ---- workflows ----------------------------------------------------------------------------------

def test_a_workflow_naming_another_keys_output_or_upload_is_refused_and_not_queued(world):
    alice_file, _ = world.produce("alice")
    uploaded = world.upload("alice", "alice_in.png", png((0, 255, 0)))
    assert uploaded.status_code == 200, uploaded.text
    alice_input = uploaded.json()["name"]
    with open(os.path.join(world.host.workdir, "input", "operator.png"), "wb") as handle:
        handle.write(png((0, 0, 255)))
    queue_before = world.admin.get(world.host.url("/queue")).json()
    history_before = len(world.admin.get(world.host.url("/history")).json())

    for source in (alice_file + " [output]", alice_input, alice_input + " [input]",
                   "../output/" + alice_file, "./" + alice_input, "sub/../" + alice_input):
        for twin in ("", "/api"):
            answer = world.post("bob", twin + "/prompt", json={"prompt": image_workflow("bob", source)})
            refused(answer)
            assert answer.json()["node_id"] == "1" and answer.json()["input"] == "image"
            assert answer.json()["file"] == source
    world.settle()
    assert world.admin.get(world.host.url("/queue")).json() == queue_before
    assert len(world.admin.get(world.host.url("/history")).json()) == history_before

    # The owner, an admin key and the admin may; anyone may load the operator's own input.
    world.run("alice", image_workflow("again", alice_file + " [output]"))
    world.run("alice", image_workflow("again", alice_input))
    world.run("boss", image_workflow("boss", alice_input))
    world.run("admin", image_workflow("admin", alice_file + " [output]"))
    world.run("bob", image_workflow("bob", "operator.png"))
    # Text that merely ends like an annotation names no file.
    world.run("bob", image_workflow("not a file [output]"))


# ---- /object_info -----------------------------------------------------------------------------

def test_object_info_lists_a_keys_own_uploads_and_the_operators_files_only(world):
    with open(os.path.join(world.host.workdir, "input", "operator.png"), "wb") as handle:
        handle.write(png((0, 0, 255)))
    assert world.upload("alice", "alice.png", png((1, 2, 3))).status_code == 200
    assert world.upload("bob", "bob.png", png((4, 5, 6))).status_code == 200
    for twin in ("", "/api"):
        for path in ("/object_info", "/object_info/LoadImage"):
            assert loaders_list(world.get("bob", twin + path)) == ["bob.png", "operator.png"]
            assert loaders_list(world.get("alice", twin + path)) == ["alice.png", "operator.png"]
            assert loaders_list(world.get("boss", twin + path)) == ["alice.png", "bob.png", "operator.png"]
            assert loaders_list(world.get("admin", twin + path)) == ["alice.png", "bob.png", "operator.png"]
    if world.mode == "enable":
        assert loaders_list(world.get("anonymous", "/object_info")) == ["alice.png", "bob.png", "operator.png"]
    # The rest of the catalog is ComfyUI's, untouched.
    as_bob, as_admin = world.get("bob", "/object_info").json(), world.get("admin", "/object_info").json()
    as_admin["LoadImage"]["input"]["required"]["image"][0].remove("alice.png")
    assert as_bob == as_admin
    # A new upload shows at once (the filtered answer is not served stale).
    assert world.upload("alice", "alice2.png", png((7, 8, 9))).status_code == 200
    assert loaders_list(world.get("bob", "/object_info")) == ["bob.png", "operator.png"]
    assert loaders_list(world.get("alice", "/object_info")) == ["alice.png", "alice2.png", "operator.png"]


# ---- uploads ----------------------------------------------------------------------------------

def test_an_upload_cannot_replace_or_reach_another_keys_file(world):
    input_dir = os.path.join(world.host.workdir, "input")
    original = png((10, 20, 30))
    assert world.upload("alice", "a.png", original).json()["name"] == "a.png"
    alice_file, _ = world.produce("alice")
    with open(os.path.join(input_dir, "operator.png"), "wb") as handle:
        handle.write(png((0, 0, 255)))
    os.makedirs(os.path.join(input_dir, "x"), exist_ok=True)

    evil = png((66, 66, 66))
    for twin in ("", "/api"):
        for path in ("/upload/image", "/upload/mask"):
            extra = {"original_ref": json.dumps({"filename": "bob_base.png", "type": "input"})} \
                if path == "/upload/mask" else {}
            refused(world.upload("bob", "a.png", evil, twin + path, overwrite="true", **extra))
            refused(world.upload("bob", "a.png", evil, twin + path, overwrite="1", type="input", **extra))
            refused(world.upload("bob", "../a.png", evil, twin + path, overwrite="true", subfolder="x", **extra))
            refused(world.upload("bob", "a.png", evil, twin + path, overwrite="true", subfolder="x/..", **extra))
            refused(world.upload("bob", alice_file, evil, twin + path, overwrite="true", type="output", **extra))
            refused(world.upload("bob", "operator.png", evil, twin + path, overwrite="true", **extra))
    with open(os.path.join(input_dir, "a.png"), "rb") as handle:
        assert handle.read() == original
    with open(os.path.join(world.host.workdir, "output", alice_file), "rb") as handle:
        assert handle.read() != evil

    # Without overwrite ComfyUI renames: bob gets a file of his own, alice keeps hers.
    renamed = world.upload("bob", "a.png", evil)
    assert renamed.json()["name"] == "a (1).png"
    assert world.view("bob", "a (1).png", type="input").status_code == 200
    refused(world.view("alice", "a (1).png", type="input"))
    refused(world.view("bob", "a.png", type="input"))
    # The same bytes again: ComfyUI answers with the existing name, and bob has them anyway.
    same = world.upload("bob", "a.png", original)
    assert same.json()["name"] == "a.png"
    assert world.view("bob", "a.png", type="input").status_code == 200
    # But a file two keys share is neither one's to replace.
    refused(world.upload("bob", "a.png", evil, overwrite="true"))
    # A key may replace its own file; the operator's files stay readable.
    assert world.upload("bob", "a (1).png", png((1, 1, 1)), overwrite="true").status_code == 200
    assert world.view("bob", "operator.png", type="input").status_code == 200

    # A mask built on another key's image is refused (the handler reads that image).
    assert world.upload("bob", "bob_base.png", png((9, 9, 9))).status_code == 200
    refused(world.upload("bob", "mask.png", evil, "/upload/mask",
                         original_ref=json.dumps({"filename": alice_file, "type": "output"})))
    refused(world.upload("bob", "mask.png", evil, "/api/upload/mask",
                         original_ref=json.dumps({"filename": "a.png [output]", "subfolder": ""})))
    assert world.upload("bob", "mask.png", evil, "/upload/mask",
                        original_ref=json.dumps({"filename": "bob_base.png", "type": "input"})).status_code == 200
    # The admin may replace anything.
    assert world.upload("admin", "a.png", evil, overwrite="true").status_code == 200


def test_a_file_name_used_again_belongs_to_the_new_writer_and_a_cached_result_to_both(world):
    bob_file, _ = world.produce("bob", prefix="reuse")
    world.settle()
    os.remove(os.path.join(world.host.workdir, "output", bob_file))  # the operator cleans up
    alice_file, _ = world.produce("alice", prefix="reuse", color=0x112233)  # not ComfyUI's cached result
    assert alice_file == bob_file  # SaveImage counts from the files that exist
    world.settle()
    assert world.view("alice", alice_file).status_code == 200
    refused(world.view("bob", alice_file))

    # The same workflow again is answered from ComfyUI's cache with the same file:
    # the second key computed exactly those bytes, so it may read them.
    shared, _ = world.produce("alice", prefix="cached")
    again = world.run("bob", image_workflow("cached"))["outputs"]["3"]["images"][0]["filename"]
    assert again == shared
    world.settle()
    assert world.view("bob", shared).status_code == 200
    assert world.view("alice", shared).status_code == 200


# ---- newer ComfyUI's assets ------------------------------------------------------------------------

def test_asset_content_of_another_keys_file_is_refused(world):
    """``/api/assets/{id}/content`` sends the file behind an asset id (the stand-in's
    ``--enable-assets`` has the list and the content route of newer ComfyUI)."""
    alice_file, _ = world.produce("alice")
    assert world.upload("alice", "alice_in.png", png((3, 3, 3))).status_code == 200
    with open(os.path.join(world.host.workdir, "input", "operator.png"), "wb") as handle:
        handle.write(png((0, 0, 255)))
    listed = world.get("bob", "/api/assets")
    assert listed.status_code == 200, listed.text
    ids = {asset["name"]: asset["id"] for asset in listed.json()["assets"]}
    for name in (alice_file, "alice_in.png"):
        refused(world.get("bob", f"/api/assets/{ids[name]}/content"))
        refused(world.get("bob", f"/api/assets/{ids[name].upper()}/content"))
        assert world.get("alice", f"/api/assets/{ids[name]}/content").status_code == 200
        assert world.get("admin", f"/api/assets/{ids[name]}/content").status_code == 200
        assert world.get("boss", f"/api/assets/{ids[name]}/content").status_code == 200
    assert world.get("bob", f"/api/assets/{ids['operator.png']}/content").status_code == 200
    assert world.get("bob", f"/api/assets/{uuid.uuid4()}/content").status_code == 404


# ---- several processes ------------------------------------------------------------------------

def test_processes_sharing_the_database_and_folders_learn_each_others_owners(make_host, tmp_path):
    url = fresh_postgres_database() if ON_POSTGRES else f"sqlite:///{tmp_path / 'auth.db'}"
    folders = []
    for name in ("input", "output"):
        os.makedirs(tmp_path / "shared" / name)
        folders += [f"--{name}-directory", str(tmp_path / "shared" / name)]
    env = {"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD, "COMFYUI_API_AUTH_DB": url,
           **FAST}
    hosts = []
    try:
        hosts += [make_host(env=env, extra_args=folders), make_host(env=env, extra_args=folders)]
        one, two_host = World(hosts[0], "require"), hosts[1]
        alice_file, _ = one.produce("alice")
        assert one.upload("alice", "alice.png", png((5, 5, 5))).status_code == 200
        time.sleep(1.5)  # the other process refreshes every 0.5 s
        two = World(two_host, "require", keys=one.keys)
        refused(two.view("bob", "alice.png", type="input"))
        assert two.view("alice", "alice.png", type="input").status_code == 200
        assert two.view("alice", alice_file).status_code == 200
        refused(two.view("bob", alice_file))
        assert loaders_list(two.get("bob", "/object_info")) == []
        assert loaders_list(two.get("alice", "/object_info")) == ["alice.png"]
        refused(two.queue("bob", image_workflow("bob", "alice.png")))
        refused(two.upload("bob", "alice.png", png((6, 6, 6)), overwrite="true"))
    finally:
        for host in hosts:
            host.stop()
        if ON_POSTGRES:
            drop_postgres_database(url)
