"""Workflows queued with keys: attribution, job accounting, job limits and
the API Key Info node, through the ComfyUI stand-in's real prompt queue."""

import json
import time

import pytest


def info_workflow(tag="x"):
    """ApiKeyInfo -> name|key_id|metadata joined -> SaveText (an output node)."""
    return {
        "1": {"class_type": "ApiKeyInfo", "inputs": {}},
        "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": ["1", 1], "delimiter": "|"}},
        "3": {"class_type": "StringConcatenate", "inputs": {"string_a": ["2", 0], "string_b": ["1", 2], "delimiter": "|"}},
        "4": {"class_type": "SaveText", "inputs": {"text": ["3", 0], "filename_prefix": tag}},
    }


def slow_workflow(seconds):
    return {"1": {"class_type": "SlowNode", "inputs": {"seconds": seconds, "text": "done"}},
            "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "slow"}}}


def fail_workflow():
    return {"1": {"class_type": "FailNode", "inputs": {"message": "boom"}},
            "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "fail"}}}


def queue(host, workflow, headers=None, **extra):
    response = host.post("/prompt", json={"prompt": workflow, **extra}, headers=headers)
    return response


def wait_done(host, prompt_id, headers=None, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = host.get(f"/api/history/{prompt_id}", headers=headers).json()
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} did not finish")


def node_output(item):
    return item["outputs"]["4"]["text"][0]


def wait_jobs(host, key_id, predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = host.get(f"/api/keys/{key_id}").json()["usage_stats"]["jobs"]
        if predicate(jobs):
            return jobs
        time.sleep(0.2)
    raise AssertionError(f"jobs never matched: {jobs}")


@pytest.fixture
def server(make_host):
    return make_host(env={"COMFYUI_API_AUTH_FLUSH_INTERVAL": "0.2"})


def test_node_reports_the_key_that_queued_each_run_without_stale_cache(server):
    a = server.create_key("alice", rate_limit=1000, metadata={"team": "a"})
    b = server.create_key("bob", rate_limit=1000, metadata={"team": "b"})
    as_a, as_b = {"X-API-Key": a["api_key"]}, {"Authorization": f"Bearer {b['api_key']}"}
    outputs = []
    for headers in (as_a, as_b, as_a, None):
        response = queue(server, info_workflow(), headers)
        assert response.status_code == 200, response.text
        outputs.append(node_output(wait_done(server, response.json()["prompt_id"])))
    assert outputs[0] == f'alice|{a["key_id"]}|{{"team": "a"}}'
    assert outputs[1] == f'bob|{b["key_id"]}|{{"team": "b"}}'
    assert outputs[2] == outputs[0]
    assert outputs[3] == "||{}"  # the local admin queued it without a key

    jobs_a = wait_jobs(server, a["key_id"], lambda j: j["prompts_completed"] == 2)
    assert jobs_a["prompts_queued"] == 2 and jobs_a["prompts_failed"] == 0
    jobs_b = wait_jobs(server, b["key_id"], lambda j: j["prompts_completed"] == 1)
    assert jobs_b["prompts_queued"] == 1


def test_outcomes_and_execution_seconds_are_counted_per_key(server):
    key = server.create_key("worker", rate_limit=1000)
    headers = {"X-API-Key": key["api_key"]}
    ok = queue(server, slow_workflow(0.6), headers).json()["prompt_id"]
    failed = queue(server, fail_workflow(), headers).json()["prompt_id"]
    wait_done(server, ok)
    wait_done(server, failed)
    long_one = queue(server, slow_workflow(30), headers).json()["prompt_id"]
    time.sleep(0.5)
    assert server.post("/interrupt", json={}, headers=headers).status_code == 200
    wait_done(server, long_one)
    jobs = wait_jobs(server, key["key_id"], lambda j: j["prompts_waiting"] == 0)
    assert (jobs["prompts_queued"], jobs["prompts_completed"], jobs["prompts_failed"],
            jobs["prompts_interrupted"]) == (3, 1, 1, 1)
    assert 0.6 <= jobs["execution_seconds"] < 5
    server.restart()
    after = server.get(f"/api/keys/{key['key_id']}").json()["usage_stats"]["jobs"]
    assert after == jobs


def test_no_secret_in_queue_history_or_outputs(server):
    key = server.create_key("secretive", rate_limit=1000)
    headers = {"X-API-Key": key["api_key"]}
    blocker = queue(server, slow_workflow(1.0), headers).json()["prompt_id"]
    waiting = queue(server, info_workflow("secret"), headers).json()["prompt_id"]
    seen = server.get("/queue", headers=headers).text
    wait_done(server, blocker)
    item = wait_done(server, waiting)
    seen += json.dumps(item) + server.get("/history", headers=headers).text
    assert key["api_key"] not in seen and key["api_key"][6:] not in seen
    import hashlib
    assert hashlib.sha256(key["api_key"].encode()).hexdigest() not in seen
    import glob
    for path in glob.glob(f"{server.workdir}/output/**/*", recursive=True):
        if path.endswith(".txt"):
            assert key["api_key"] not in open(path).read()


def test_a_client_cannot_take_over_another_keys_prompt_id(server):
    a = server.create_key("a", rate_limit=1000)
    b = server.create_key("b", rate_limit=1000)
    first = queue(server, info_workflow(), {"X-API-Key": a["api_key"]}, prompt_id="fixed-id").json()
    assert first["prompt_id"] == "fixed-id"
    second = queue(server, info_workflow(), {"X-API-Key": b["api_key"]}, prompt_id="fixed-id").json()
    assert second["prompt_id"] != "fixed-id"
    assert node_output(wait_done(server, "fixed-id")).startswith("a|")
    assert node_output(wait_done(server, second["prompt_id"])).startswith("b|")


def test_job_limits_per_hour_and_waiting_at_once(server):
    key = server.create_key("limited", rate_limit=1000, job_limits={"prompts_per_hour": 3, "max_waiting": 1})
    headers = {"X-API-Key": key["api_key"]}
    first = queue(server, slow_workflow(1.0), headers)
    assert first.status_code == 200
    busy = queue(server, slow_workflow(0.1), headers)
    assert busy.status_code == 429 and busy.json()["error_code"] == "TOO_MANY_WAITING_PROMPTS"
    assert "Retry-After" in busy.headers
    wait_done(server, first.json()["prompt_id"])
    time.sleep(1.3)  # the poll notices the finished prompt
    for _ in range(2):
        accepted = queue(server, slow_workflow(0.0), headers)
        assert accepted.status_code == 200, accepted.text
        wait_done(server, accepted.json()["prompt_id"])
        time.sleep(1.3)
    over = queue(server, slow_workflow(0.0), headers)
    assert over.status_code == 429 and over.json()["error_code"] == "PROMPT_LIMIT_EXCEEDED"
    assert over.headers["X-RateLimit-Limit"] == "3" and int(over.headers["Retry-After"]) > 0
    # invalid prompts are refused by ComfyUI and do not spend the quota
    server.patch(f"/api/keys/{key['key_id']}", json={"job_limits": {"prompts_per_hour": 4, "max_waiting": None}})
    assert queue(server, {"1": {"class_type": "NoSuchNode", "inputs": {}}}, headers).status_code == 400
    assert queue(server, slow_workflow(0.0), headers).status_code == 200
    assert queue(server, slow_workflow(0.0), headers).status_code == 429


def test_node_is_listed_with_category_and_description(server):
    info = server.get("/api/object_info/ApiKeyInfo").json()["ApiKeyInfo"]
    assert info["category"] == "utils/api keys"
    assert "queued" in info["description"] and info["output_name"] == ["name", "key_id", "metadata_json"]
