"""Each key's work is its own (issue 14): queue, history, interrupt and newer
ComfyUI's jobs routes, over real HTTP on the stand-in, in require and enable
modes, under both route spellings.

Two generate keys (alice, bob), an admin key, and in enable mode the
anonymous caller. Workflows need no model: EmptyImage -> ImageBlur ->
SaveImage, and ``OwnWorkHold`` (tests/nodes/own_work_probe), which runs until
the test releases it and reports the Comfy.org secrets it was handed; its
``/own_work_probe/stored`` route shows ComfyUI's stored items as they are.
The stand-in runs with ``--emulate-jobs-api`` (newer ComfyUI's /api/jobs).
"""

import itertools
import json
import os
import time
import uuid

import pytest
import requests

from conftest import REPO, Host

PASSWORD = "correct horse battery staple"
PROBE = os.path.join(REPO, "tests", "nodes", "own_work_probe")
SECRETS = {"api_key_comfy_org": "sk-comfy-SECRET-1", "auth_token_comfy_org": "tok-SECRET-2",
           "Client_Secret": "cs-SECRET-3", "extra_pnginfo": {"workflow": {"nodes": [], "service": {"myPassword": "pw-SECRET-4"}}}}
SECRET_VALUES = ("sk-comfy-SECRET-1", "tok-SECRET-2", "cs-SECRET-3", "pw-SECRET-4")
TWINS = ("", "/api")
_colors = itertools.count(1)


class Stand:
    def __init__(self, host, mode):
        self.host, self.mode = host, mode
        admin = requests.Session()
        assert admin.post(host.url("/api/auth/login"), json={"password": PASSWORD}).status_code == 200
        made = {name: admin.post(host.url("/api/keys"), json={"name": name, "rate_limit": 100000, "scopes": scopes},
                                 timeout=10).json()
                for name, scopes in (("alice", ["generate"]), ("bob", ["generate"]), ("root", ["admin"]))}
        self.alice = {"X-API-Key": made["alice"]["api_key"]}
        self.bob = {"Authorization": "Bearer " + made["bob"]["api_key"]}
        self.admin = {"X-API-Key": made["root"]["api_key"]}
        # Everyone who sees everything: the admin key, and the anonymous caller of enable mode.
        self.everyone_seers = [self.admin] + ([{}] if mode == "enable" else [])

    def get(self, path, headers):
        return requests.get(self.host.url(path), headers=headers, timeout=10)

    def post(self, path, headers, body=None, data=None):
        if data is not None:
            return requests.post(self.host.url(path), headers=headers, data=data, timeout=10)
        return requests.post(self.host.url(path), headers=headers, json=body, timeout=10)

    def queue(self, headers, workflow, extra_data=None):
        body = {"prompt": workflow}
        if extra_data is not None:
            body["extra_data"] = json.loads(json.dumps(extra_data))
        response = self.post("/prompt", headers, body)
        assert response.status_code == 200, response.text
        return response.json()["prompt_id"]

    def ids(self, answer):
        return sorted(item[1] for item in answer)

    def admin_queue(self):
        queue = self.get("/queue", self.admin).json()
        return self.ids(queue["queue_running"]), self.ids(queue["queue_pending"])

    def stored(self):
        return self.get("/own_work_probe/stored", self.admin).json()

    def release(self, gate):
        assert self.post(f"/own_work_probe/release/{gate}", self.admin).status_code == 200

    def wait(self, predicate, what, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"never: {what}")

    def wait_running(self, prompt_id):
        self.wait(lambda: self.admin_queue()[0] == [prompt_id], f"{prompt_id} running")

    def wait_done(self, *prompt_ids):
        self.wait(lambda: all(p in self.get(f"/history/{p}", self.admin).json() for p in prompt_ids), "done")

    def reset(self):
        """Nothing queued, nothing in history (the admin acts as in ComfyUI)."""
        self.post("/interrupt", self.admin, {})
        assert self.post("/queue", self.admin, {"clear": True}).status_code == 200
        self.wait(lambda: self.admin_queue() == ([], []), "queue empty")
        assert self.post("/history", self.admin, {"clear": True}).status_code == 200


def image_workflow(tag="own"):
    """EmptyImage -> ImageBlur -> SaveImage; a fresh colour so the cache never skips it."""
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1,
                                                          "color": next(_colors)}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": tag}}}


def hold_workflow(gate):
    return {"1": {"class_type": "OwnWorkHold", "inputs": {"gate": gate}}}


def new_gate():
    return uuid.uuid4().hex


def refused(response):
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error_code"] == "NOT_YOUR_PROMPT" and body["error"]
    return True


@pytest.fixture(scope="module", params=["require", "enable"])
def stand(request, tmp_path_factory):
    mode = request.param
    host = Host(tmp_path_factory.mktemp(mode), local_admin=False,
                env={"COMFYUI_API_AUTH": mode, "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
                     "COMFYUI_API_AUTH_TRUST_LOCALHOST": "off", "COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"},
                extra_args=["--emulate-jobs-api", "--custom-node", PROBE])
    try:
        host.start()
        yield Stand(host, mode)
    finally:
        host.discard()


@pytest.fixture
def fresh(stand):
    stand.reset()
    yield stand
    stand.reset()


# ---- 1. the queue -------------------------------------------------------------------------------------

def test_a_key_sees_only_its_own_queue_and_no_one_sees_secrets_which_comfyui_keeps(fresh):
    s = fresh
    gate, alice_gate = new_gate(), new_gate()
    running = s.queue(s.bob, hold_workflow(gate), SECRETS)
    s.wait_running(running)
    alice_ids = sorted([s.queue(s.alice, image_workflow(), SECRETS), s.queue(s.alice, hold_workflow(alice_gate), SECRETS)])
    bob_pending = s.queue(s.bob, image_workflow(), SECRETS)
    admin_own = s.queue(s.admin, image_workflow(), SECRETS)
    try:
        for twin in TWINS:
            alice = s.get(twin + "/queue", s.alice)
            assert alice.status_code == 200
            assert sorted(alice.json()) == ["queue_pending", "queue_running"]
            assert alice.json()["queue_running"] == []  # bob's prompt runs
            assert s.ids(alice.json()["queue_pending"]) == alice_ids
            bob = s.get(twin + "/queue", s.bob).json()
            assert (s.ids(bob["queue_running"]), s.ids(bob["queue_pending"])) == ([running], [bob_pending])
            texts = [alice.text, json.dumps(bob)]
            for seer in s.everyone_seers:
                everyone = s.get(twin + "/queue", seer)
                assert s.ids(everyone.json()["queue_running"]) == [running]
                assert s.ids(everyone.json()["queue_pending"]) == sorted(alice_ids + [bob_pending, admin_own])
                texts.append(everyone.text)
            for text in texts:
                assert not any(secret in text for secret in SECRET_VALUES), text
            # The item is otherwise ComfyUI's: five elements, extra_data without the secrets only.
            item = alice.json()["queue_pending"][0]
            assert len(item) == 5 and sorted(item[3]) == ["create_time", "extra_pnginfo"]
            assert item[3]["extra_pnginfo"] == {"workflow": {"nodes": [], "service": {}}}
            # GET /prompt still counts everyone's.
            assert s.get(twin + "/prompt", s.alice).json()["exec_info"]["queue_remaining"] == 5
        if s.mode == "require":
            assert s.get("/queue", {}).status_code == 401
        # ComfyUI's own items still hold every secret...
        stored = s.stored()
        for extra_data in [stored["running"][running]] + [stored["pending"][p] for p in alice_ids]:
            assert extra_data["api_key_comfy_org"] == SECRETS["api_key_comfy_org"]
            assert extra_data["Client_Secret"] == SECRETS["Client_Secret"]
            assert extra_data["extra_pnginfo"] == SECRETS["extra_pnginfo"]
        # ...and the partner-node inputs get them while the prompt runs.
        s.release(gate)
        s.wait(lambda: alice_gate in s.get("/own_work_probe/seen", s.admin).json(), "alice's hold runs")
        seen = s.get("/own_work_probe/seen", s.admin).json()
        assert seen[gate] == seen[alice_gate] == {"api_key_comfy_org": SECRETS["api_key_comfy_org"],
                                                  "auth_token_comfy_org": SECRETS["auth_token_comfy_org"]}
    finally:
        s.release(gate)
        s.release(alice_gate)


# ---- 2. the history -----------------------------------------------------------------------------------

def test_a_key_sees_only_its_own_history_paged_over_its_own_items(fresh):
    s = fresh
    order = [("a1", s.alice), ("b1", s.bob), ("a2", s.alice), ("b2", s.bob), ("a3", s.alice), ("x1", s.admin)]
    ids = {}
    for name, headers in order:
        ids[name] = s.queue(headers, image_workflow(name), SECRETS)
        s.wait_done(ids[name])  # one at a time: history order is queue order
    a = [ids["a1"], ids["a2"], ids["a3"]]
    for twin in TWINS:
        def alice(query="", twin=twin):
            response = s.get(twin + "/history" + query, s.alice)
            assert response.status_code == 200
            assert not any(secret in response.text for secret in SECRET_VALUES)
            return list(response.json())
        assert alice() == a
        assert alice("?max_items=2") == a[1:]
        assert alice("?max_items=2&offset=0") == a[:2]
        assert alice("?offset=1") == a[1:]
        assert alice("?max_items=1&offset=2") == a[2:]
        assert alice("?max_items=10") == a
        assert alice("?max_items=0") == []
        assert alice("?offset=5") == []
        assert list(s.get(twin + "/history", s.bob).json()) == [ids["b1"], ids["b2"]]
        # Another's id answers as an unknown one does.
        assert s.get(f"{twin}/history/{ids['b1']}", s.alice).json() == {}
        assert s.get(f"{twin}/history/{ids['x1']}", s.alice).json() == {}
        assert s.get(f"{twin}/history/no-such-id", s.alice).json() == {}
        own = s.get(f"{twin}/history/{ids['a2']}", s.alice).json()
        assert list(own) == [ids["a2"]] and own[ids["a2"]]["outputs"]["3"]["images"]
        assert sorted(own[ids["a2"]]["prompt"][3]) == ["create_time", "extra_pnginfo"]
        for seer in s.everyone_seers:
            everyone = s.get(twin + "/history", seer)
            assert list(everyone.json()) == [ids[name] for name, _ in order]
            assert list(s.get(twin + "/history?max_items=2", seer).json()) == [ids["a3"], ids["x1"]]
            single = s.get(f"{twin}/history/{ids['b1']}", seer)
            for text in (everyone.text, single.text):
                assert not any(secret in text for secret in SECRET_VALUES)
    # ComfyUI itself took out its two keys when the prompt ended; the others stay in its item.
    assert s.stored()["history"][ids["a1"]]["Client_Secret"] == SECRETS["Client_Secret"]
    # A bad number gets ComfyUI's own answer, which shows nothing.
    assert s.get("/history?max_items=x", s.alice).status_code == 500


# ---- 4. cancelling ------------------------------------------------------------------------------------

def test_a_key_deletes_and_clears_only_its_own_queued_prompts(fresh):
    s = fresh
    gate = new_gate()
    running = s.queue(s.bob, hold_workflow(gate))
    s.wait_running(running)
    a1, a2 = s.queue(s.alice, image_workflow()), s.queue(s.alice, image_workflow())
    b1 = s.queue(s.bob, image_workflow())
    x1 = s.queue(s.admin, image_workflow())
    try:
        everything = ([running], sorted([a1, a2, b1, x1]))
        for twin in TWINS:
            for body in ({"delete": [b1]}, {"delete": [a1, b1]}, {"delete": [x1]}, {"delete": ["no-such-id"]},
                         {"delete": [running]}, {"delete": [a1, x1]},
                         {"clear": True, "delete": [b1]}):
                assert refused(s.post(twin + "/queue", s.alice, body)), body
                assert s.admin_queue() == everything
        assert s.post("/queue", s.alice, {"delete": "abc"}).status_code == 400
        assert s.post("/queue", s.alice, data="not json").status_code == 400
        assert s.admin_queue() == everything
        assert s.post("/api/queue", s.alice, {"delete": [a1]}).status_code == 200
        assert s.admin_queue() == ([running], sorted([a2, b1, x1]))
        a3 = s.queue(s.alice, image_workflow())
        assert s.post("/queue", s.alice, {"clear": True}).status_code == 200
        assert s.admin_queue() == ([running], sorted([b1, x1]))  # a2 and a3 gone, the rest stays
        assert s.post("/queue", s.alice, {"clear": True, "delete": [a3]}).status_code == 200
        # The admin (and the anonymous caller of enable mode) deletes and clears as ComfyUI does: anyone's.
        if s.mode == "enable":
            assert s.post("/queue", {}, {"delete": [x1]}).status_code == 200
            assert s.admin_queue() == ([running], [b1])
        assert s.post("/queue", s.admin, {"delete": [b1]}).status_code == 200
        assert s.post("/api/queue", s.admin, {"clear": True}).status_code == 200
        assert s.admin_queue() == ([running], [])
    finally:
        s.release(gate)


def test_a_key_deletes_and_clears_only_its_own_history(fresh):
    s = fresh
    a1, b1, a2, x1 = (s.queue(h, image_workflow()) for h in (s.alice, s.bob, s.alice, s.admin))
    s.wait_done(a1, b1, a2, x1)

    def history():
        return sorted(s.get("/history", s.admin).json())

    everything = sorted([a1, b1, a2, x1])
    for twin in TWINS:
        for body in ({"delete": [b1]}, {"delete": [a1, b1]}, {"delete": [x1]}, {"delete": ["no-such-id"]},
                     {"clear": True, "delete": [x1]}):
            assert refused(s.post(twin + "/history", s.alice, body)), body
            assert history() == everything
    assert s.post("/history", s.alice, {"delete": {"a": 1}}).status_code == 400
    assert s.post("/api/history", s.alice, {"delete": [a1]}).status_code == 200
    assert history() == sorted([b1, a2, x1])
    assert s.post("/history", s.alice, {"clear": True}).status_code == 200
    assert history() == sorted([b1, x1])
    assert s.post("/history", s.bob, {"clear": True}).status_code == 200
    assert history() == [x1]
    if s.mode == "enable":  # the anonymous caller acts as in ComfyUI
        assert s.post("/history", {}, {"clear": True}).status_code == 200
        assert history() == []


def test_a_key_interrupts_only_its_own_running_prompt(fresh):
    s = fresh
    gate = new_gate()
    bobs = s.queue(s.bob, hold_workflow(gate))
    s.wait_running(bobs)
    mine = s.queue(s.alice, image_workflow())
    try:
        for twin in TWINS:
            assert refused(s.post(twin + "/interrupt", s.alice, {}))
            assert refused(s.post(twin + "/interrupt", s.alice, data=b""))
            assert refused(s.post(twin + "/interrupt", s.alice, {"prompt_id": bobs}))
            assert refused(s.post(twin + "/interrupt", s.alice, {"prompt_id": "no-such-id"}))
            # Her own pending prompt is not running: ComfyUI skips it, nothing else is touched.
            assert s.post(twin + "/interrupt", s.alice, {"prompt_id": mine}).status_code == 200
        time.sleep(0.3)  # an interrupt would have ended bob's prompt by now
        assert s.admin_queue() == ([bobs], [mine])
        assert s.post("/api/interrupt", s.bob, {}).status_code == 200
        s.wait_done(bobs, mine)
        status = s.get(f"/history/{bobs}", s.bob).json()[bobs]["status"]
        assert "execution_interrupted" in [message[0] for message in status["messages"]]
        # The admin interrupts anyone's, as in ComfyUI.
        gate2 = new_gate()
        alices = s.queue(s.alice, hold_workflow(gate2))
        s.wait_running(alices)
        assert s.post("/interrupt", s.admin, {"prompt_id": alices}).status_code == 200
        s.wait_done(alices)
        if s.mode == "enable":  # the anonymous caller too
            gate3 = new_gate()
            bobs2 = s.queue(s.bob, hold_workflow(gate3))
            s.wait_running(bobs2)
            assert s.post("/api/interrupt", {}, data=b"").status_code == 200
            s.wait_done(bobs2)
        # With nothing running, a key's global interrupt is a no-op that says so.
        assert s.post("/interrupt", s.alice, {}).status_code == 200
    finally:
        s.release(gate)


# ---- 6. newer ComfyUI's jobs routes -------------------------------------------------------------------

def test_jobs_routes_show_and_cancel_only_own_jobs_without_secrets(fresh):
    s = fresh
    a_done, b_done = s.queue(s.alice, image_workflow(), SECRETS), s.queue(s.bob, image_workflow(), SECRETS)
    s.wait_done(a_done, b_done)
    gate = new_gate()
    b_running = s.queue(s.bob, hold_workflow(gate), SECRETS)
    s.wait_running(b_running)
    a_pending, b_pending = s.queue(s.alice, image_workflow(), SECRETS), s.queue(s.bob, image_workflow(), SECRETS)
    a_more = s.queue(s.alice, image_workflow(), SECRETS)
    try:
        # Newer ComfyUI registers "/api/jobs": aiohttp serves /api/jobs and /api/api/jobs.
        for twin in ("/api", "/api/api"):
            listed = s.get(twin + "/jobs", s.alice)
            assert listed.status_code == 200, listed.text
            body = listed.json()
            assert sorted(job["id"] for job in body["jobs"]) == sorted([a_done, a_pending, a_more])
            assert body["pagination"] == {"offset": 0, "limit": None, "total": 3, "has_more": False}
            page = s.get(twin + "/jobs?limit=1&status=pending", s.alice).json()
            assert len(page["jobs"]) == 1 and page["pagination"]["total"] == 2 and page["pagination"]["has_more"]
            assert s.get(twin + "/jobs?status=bogus", s.alice).status_code == 400  # ComfyUI's own answer
            for seer in s.everyone_seers:
                assert s.get(twin + "/jobs", seer).json()["pagination"]["total"] == 6
            # One job: another's answers as an unknown one.
            for other in (b_done, b_running, b_pending, str(uuid.uuid4())):
                unknown = s.get(f"{twin}/jobs/{other}", s.alice)
                assert unknown.status_code == 404 and unknown.json() == {"error": "Job not found"}
            for own in (a_done, a_pending):
                job = s.get(f"{twin}/jobs/{own}", s.alice)
                assert job.status_code == 200 and job.json()["id"] == own
                assert sorted(job.json()["workflow"]["extra_data"]) == ["create_time", "extra_pnginfo"]
                assert not any(secret in job.text for secret in SECRET_VALUES)
            for seer in s.everyone_seers:
                job = s.get(f"{twin}/jobs/{b_pending}", seer)
                assert job.status_code == 200 and not any(secret in job.text for secret in SECRET_VALUES)
            # Cancels: another's (running, pending, finished, unknown) refused, nothing changed.
            for other in (b_running, b_pending, b_done, str(uuid.uuid4())):
                assert refused(s.post(f"{twin}/jobs/{other}/cancel", s.alice))
            assert refused(s.post(twin + "/jobs/cancel", s.alice, {"job_ids": [a_pending, b_pending]}))
            assert s.post(twin + "/jobs/cancel", s.alice, {"job_ids": ["not-a-uuid"]}).status_code == 400
            assert s.admin_queue() == ([b_running], sorted([a_pending, b_pending, a_more]))
        assert s.post(f"/api/jobs/{a_pending}/cancel", s.alice).json() == {"cancelled": True}
        assert s.post("/api/api/jobs/cancel", s.alice, {"job_ids": [a_more]}).json() == {"cancelled": True}
        assert s.admin_queue() == ([b_running], [b_pending])
        assert s.post(f"/api/jobs/{b_pending}/cancel", s.admin).json() == {"cancelled": True}
        assert s.admin_queue() == ([b_running], [])
        assert s.post(f"/api/jobs/{b_running}/cancel", s.bob).json() == {"cancelled": True}
        s.wait_done(b_running)
    finally:
        s.release(gate)
