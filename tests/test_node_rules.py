"""Node rules (COMFYUI_API_AUTH_NODE_RULES): which node classes each scope may
queue at POST /prompt, over real HTTP on the ComfyUI stand-in, and the
operator's view of them at GET /api/auth/access."""

import json
import time

import pytest

from conftest import package_module

PASSWORD = "node rules admin password"

SLOW = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
        "7": {"class_type": "SlowNode", "inputs": {"seconds": 0, "text": ["1", 0]}},
        "9": {"class_type": "SaveText", "inputs": {"text": ["7", 0], "filename_prefix": "slow"}}}
PLAIN = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
         "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "plain"}}}


def rules_env(rules, **extra):
    env = {"COMFYUI_API_AUTH_NODE_RULES": json.dumps(rules), "COMFYUI_API_AUTH_TRUST_LOCALHOST": "off",
           "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD}
    env.update(extra)
    return env


def admin_session(host):
    response = host.post("/api/auth/login", json={"password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Cookie": f"comfyui_api_auth={response.cookies['comfyui_api_auth']}"}


def key_headers(host, admin, scopes, **fields):
    key = host.create_key(f"{scopes[0]} key", headers=admin, scopes=scopes, rate_limit=1000, **fields)
    return {"Authorization": f"Bearer {key['api_key']}"}


def queue(host, workflow, headers, path="/prompt"):
    return host.post(path, json={"prompt": workflow}, headers=headers)


def nothing_queued(host, headers):
    queue_now = host.get("/api/queue", headers=headers).json()
    assert queue_now == {"queue_running": [], "queue_pending": []}, queue_now
    assert host.get("/api/history", headers=headers).json() == {}


def wait_done(host, prompt_id, headers):
    deadline = time.time() + 20
    while time.time() < deadline:
        if prompt_id in host.get(f"/api/history/{prompt_id}", headers=headers).json():
            return
        time.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} never finished")


def assert_refused(response, node_id, class_type, scope):
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error_code"] == "NODE_NOT_ALLOWED"
    assert (body["node_id"], body["class_type"], body["scope"]) == (node_id, class_type, scope)
    assert f"'{node_id}'" in body["error"] and class_type in body["error"]


def test_a_denied_node_is_refused_on_both_twins_and_nothing_is_queued(make_host):
    host = make_host(env=rules_env({"generate": {"deny": ["SlowNode", "LoadImageFromUrl"]}}))
    admin = admin_session(host)
    # A prompt limit of 1: a refused workflow must not spend it (the rules run before the prompt gate).
    generate = key_headers(host, admin, ["generate"], job_limits={"prompts_per_hour": 1, "max_waiting": None})
    for path in ("/prompt", "/api/prompt"):
        assert_refused(queue(host, SLOW, generate, path), "7", "SlowNode", "generate")
    nothing_queued(host, admin)
    accepted = queue(host, PLAIN, generate)
    assert accepted.status_code == 200, accepted.text
    wait_done(host, accepted.json()["prompt_id"], admin)


def test_rules_bind_only_their_scope_and_not_anonymous_callers(make_host):
    host = make_host(env=rules_env({"generate": {"deny": ["SlowNode"]}}))
    admin = admin_session(host)
    admin_key = key_headers(host, admin, ["admin"])
    # No rule for "admin": admin keys and admin sessions run every node; anonymous
    # callers in enable mode get ComfyUI as before.
    for headers in (admin_key, admin, {}):
        accepted = queue(host, SLOW, headers)
        assert accepted.status_code == 200, accepted.text
        wait_done(host, accepted.json()["prompt_id"], admin)


def test_an_allow_list_lets_only_its_nodes_run(make_host):
    host = make_host(env=rules_env({"generate": {"allow": ["PrimitiveString", "SaveText"]}}))
    admin = admin_session(host)
    generate = key_headers(host, admin, ["generate"])
    assert_refused(queue(host, SLOW, generate, "/api/prompt"), "7", "SlowNode", "generate")
    nothing_queued(host, admin)
    accepted = queue(host, PLAIN, generate)
    assert accepted.status_code == 200, accepted.text


def test_admin_rules_bind_admin_keys_and_sessions_and_not_generate_keys(make_host):
    host = make_host(env=rules_env({"admin": {"deny": ["SlowNode"]}}))
    admin = admin_session(host)
    admin_key = key_headers(host, admin, ["admin"])
    generate = key_headers(host, admin, ["generate"])
    for headers in (admin_key, admin):
        assert_refused(queue(host, SLOW, headers), "7", "SlowNode", "admin")
    nothing_queued(host, admin)
    accepted = queue(host, SLOW, generate)  # rules do not inherit: "admin" binds admins only
    assert accepted.status_code == 200, accepted.text


def test_bodies_that_are_not_a_json_object_get_comfyuis_own_answer(make_host):
    host = make_host(env=rules_env({"generate": {"deny": ["SlowNode"]}}))
    admin = admin_session(host)
    generate = key_headers(host, admin, ["generate"])
    bodies = [b"not json", b"[1, 2]", b'"text"', b'{"prompt": [1]}', b'{"prompt": {"1": 5}}',
              b'{"prompt": {"1": {"inputs": {}}}}', b"\xff\xfe", b"[" * 100000]
    for body in bodies:
        ruled = host.post("/prompt", data=body, headers={**generate, "Content-Type": "application/json"})
        unruled = host.post("/prompt", data=body, headers={"Content-Type": "application/json"})  # anonymous
        assert ruled.status_code == unruled.status_code and ruled.status_code != 403, (body[:20], ruled.text)
        assert ruled.text == unruled.text


def test_a_class_name_that_only_looks_alike_is_not_the_denied_one(make_host):
    """ComfyUI looks class_type up exactly; so do the rules (and a duplicated
    field is read as ComfyUI reads it: the last one wins)."""
    host = make_host(env=rules_env({"generate": {"deny": ["SlowNode"]}}))
    admin = admin_session(host)
    generate = key_headers(host, admin, ["generate"])
    body = ('{"prompt": {"3": {"class_type": "SlowNode", "class_type": "PrimitiveString", "inputs": {"value": "a"}},'
            ' "5": {"class_type": "PrimitiveString", "class_type": "SlowNode", "inputs": {"seconds": 0, "text": "b"}}}}')
    refused = host.post("/prompt", data=body, headers={**generate, "Content-Type": "application/json"})
    assert_refused(refused, "5", "SlowNode", "generate")
    nothing_queued(host, admin)


def test_the_config_file_form(make_host, tmp_path):
    data_dir = package_module("paths").data_dir(str(tmp_path / "host0" / "user"))
    (tmp_path / "host0" / "user").mkdir(parents=True)
    import os
    os.makedirs(data_dir)
    with open(os.path.join(data_dir, "config.json"), "w") as handle:
        json.dump({"node_rules": {"generate": {"deny": ["SlowNode"]}}}, handle)
    env = rules_env({})
    del env["COMFYUI_API_AUTH_NODE_RULES"]
    host = make_host(env=env)
    admin = admin_session(host)
    generate = key_headers(host, admin, ["generate"])
    assert_refused(queue(host, SLOW, generate), "7", "SlowNode", "generate")
    access = host.get("/api/auth/access", headers=admin).json()
    assert access["node_rules"] == {"generate": {"deny": ["SlowNode"]}}


@pytest.mark.parametrize("where, value, says", [
    ("env", '{"generat": {"deny": ["SlowNode"]}}', "unknown scope 'generat'"),
    ("env", '{"generate": {"deny": ["SlowNode"], "allow": ["SaveText"]}}', "both allow and deny"),
    ("file", {"generate": {"deny": ["SlowNode", 7]}}, "node class names"),
])
def test_bad_rules_fail_closed_with_one_log_line(make_host, tmp_path, where, value, says):
    env = {}
    if where == "env":
        env["COMFYUI_API_AUTH_NODE_RULES"] = value
    else:
        import os
        data_dir = package_module("paths").data_dir(str(tmp_path / "host0" / "user"))
        os.makedirs(data_dir)
        with open(os.path.join(data_dir, "config.json"), "w") as handle:
            json.dump({"node_rules": value}, handle)
    host = make_host(env=env)
    for path in ("/api/system_stats", "/prompt", "/api/auth/access"):
        response = host.get(path)
        assert response.status_code == 503 and response.json()["error_code"] == "AUTH_UNAVAILABLE", path
        assert "NODE_RULES" not in response.text and "node_rules" not in response.text
    log = host.log()
    assert log.count("refusing to serve") == 1
    line = next(line for line in log.splitlines() if "refusing to serve" in line)
    assert says in line and ("COMFYUI_API_AUTH_NODE_RULES" if where == "env" else "config.json:node_rules") in line


def test_access_view_is_for_admins(make_host):
    rules = {"generate": {"deny": ["SlowNode", "LoadImageFromUrl"]}, "admin": {"allow": ["SaveText"]}}
    host = make_host(env=rules_env(rules))
    admin = admin_session(host)
    generate = key_headers(host, admin, ["generate"])
    admin_key = key_headers(host, admin, ["admin"])
    for path in ("/api/auth/access", "/auth/access"):
        for headers in (admin, admin_key):
            response = host.get(path, headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["node_rules"] == {"generate": {"deny": ["LoadImageFromUrl", "SlowNode"]},
                                          "admin": {"allow": ["SaveText"]}}
            assert set(body["scopes"]) == {"read", "generate", "admin"} and body["default_scopes"] == ["generate"]
            assert isinstance(body["unclassified_routes"], list) and isinstance(body["route_scopes"], dict)
        assert host.get(path, headers=generate).status_code == 403
        assert host.get(path).status_code == 401


def test_own_usage_shows_the_keys_scopes(make_host):
    host = make_host(env=rules_env({}))
    admin = admin_session(host)
    for scopes in (["read"], ["generate"]):
        usage = host.get("/api/usage", headers=key_headers(host, admin, scopes))
        assert usage.status_code == 200 and usage.json()["scopes"] == scopes


@pytest.mark.parametrize("value, says", [
    ('{"generat": {"deny": ["A"]}}', "unknown scope 'generat'"),
    ('{"public": {"deny": ["A"]}}', "unknown scope 'public'"),
    ('{"generate": {"deny": ["A"], "allow": ["B"]}}', "both allow and deny"),
    ('{"generate": {}}', "needs 'allow' or 'deny'"),
    ('{"generate": {"block": ["A"]}}', "unknown field 'block'"),
    ('{"generate": ["A"]}', "must be an object"),
    ('{"generate": {"deny": "A"}}', "must be a list"),
    ('{"generate": {"deny": [1]}}', "node class names"),
    ('{"generate": {"deny": [null]}}', "node class names"),
    ('{"generate": {"deny": [" "]}}', "node class names"),
    ('{"generate": {"deny": ["A"]}, "generate": {"deny": ["B"]}}', "'generate' appears twice"),
    ('["generate"]', "JSON object"),
    ("generate=A", "JSON object"),
])
def test_bad_rules_are_refused_naming_the_setting(value, says):
    config = package_module("core.config")
    with pytest.raises(config.ConfigError) as raised:
        config.load_settings({"COMFYUI_API_AUTH_NODE_RULES": value}, None)
    assert raised.value.variable == "COMFYUI_API_AUTH_NODE_RULES" and says in str(raised.value)


def test_rules_are_frozensets_by_level_and_default_to_none():
    config = package_module("core.config")
    assert not config.load_settings({}, None).node_rules.any
    assert not config.load_settings({"COMFYUI_API_AUTH_NODE_RULES": " "}, None).node_rules.any
    rules = config.load_settings({"COMFYUI_API_AUTH_NODE_RULES":
                                  '{"read": {"allow": []}, "generate": {"deny": ["A", "A"]}}'}, None).node_rules
    anonymous, read, generate, admin = rules.by_level
    assert anonymous is None and admin is None
    assert read.allow == frozenset() and read.refuses("A")  # an empty allow list runs nothing
    assert generate.deny == frozenset({"A"}) and not generate.refuses("a") and generate.refuses("A")
    assert rules.describe() == {"read": {"allow": []}, "generate": {"deny": ["A"]}}
