"""Schemathesis against a live server: every route in server_routes/openapi.json,
under both spellings (``/api/x`` and ``/x``), must never answer 5xx and must
answer exactly what the description says (status code documented, content
type, body schema, required headers).

Three principals drive the generated requests:

* the trusted local admin (loopback, no credentials): every admin route works;
* a key holder (``Authorization: Bearer`` of a real key): ``/api/usage`` works,
  admin routes must be refused with a documented 403;
* a stateful run that follows the description's links (create a key, then
  read, change and delete *that* key).

Generated values are checked with ``negative_data_rejection`` too: data the
description calls invalid must be refused with a 4xx, so the description can
be neither looser nor (much) stricter than the server. Answers that random
generation rarely reaches (the redirect, each refusal, both 429s, sessions)
are produced on purpose and checked against the description as well.

The run is bounded (``max_examples`` per operation) and derandomized, so the
whole file takes about 20 s on two cores and repeats the same inputs.
Needs ``pip install schemathesis`` (4.x).
"""

import copy
import json
import os
from collections import Counter

import pytest
import requests
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis", minversion="4.0",
                                   reason="pip install 'schemathesis>=4,<5' to fuzz the OpenAPI description")
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import REPO, Host

OPENAPI_PATH = os.path.join(REPO, "server_routes", "openapi.json")
PASSWORD = "fuzzing admin password"
MAX_EXAMPLES = 12
STATEFUL_STEPS = 12

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
# Invalid input (as the description defines it) must be refused with a 4xx:
# keeps the description from being looser or stricter than the server.
NEGATIVE_CHECKS = CHECKS + [negative_data_rejection]

CASES: Counter = Counter()
STATUSES: Counter = Counter()


def load_document() -> dict:
    with open(OPENAPI_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def with_twins(document: dict) -> dict:
    """ComfyUI serves every route as /x and /api/x: fuzz both spellings."""
    document = copy.deepcopy(document)
    for path, item in list(document["paths"].items()):
        twin = path[len("/api"):] if path.startswith("/api/") else "/api" + path
        assert twin not in document["paths"]
        twin_item = copy.deepcopy(item)
        for operation in twin_item.values():
            if isinstance(operation, dict) and "operationId" in operation:
                operation["operationId"] += "Twin"
                for response in operation.get("responses", {}).values():
                    response.pop("links", None)
        document["paths"][twin] = twin_item
    return document


def configured(schema):
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True,
                                    with_security_parameters=False)
    return schema


FULL = configured(schemathesis.openapi.from_dict(with_twins(load_document())))
ADMIN_SCHEMA = FULL.exclude(path_regex=r"usage$")
USAGE_SCHEMA = FULL.include(path_regex=r"usage$")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    host = Host(tmp_path_factory.mktemp("fuzz"), env={
        "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
        "COMFYUI_API_AUTH_LOGIN_ATTEMPTS": "5"})
    os.makedirs(host.workdir, exist_ok=True)
    host.start()
    host.fuzz_session = requests.Session()
    host.fuzz_key = None
    yield host
    host.stop()


@pytest.fixture
def key_headers(live):
    """A working plain key. The admin run may find, disable or delete any key
    it lists (Schemathesis reuses values seen in responses), so check first."""
    if live.fuzz_key is not None:
        probe = live.get("/api/usage", headers={"X-API-Key": live.fuzz_key})
        if probe.status_code != 200:
            live.fuzz_key = None
    if live.fuzz_key is None:
        live.fuzz_key = live.create_key("fuzz key", rate_limit=1_000_000_000)["api_key"]
    return {"Authorization": f"Bearer {live.fuzz_key}"}


def run_case(case, live, headers=None):
    CASES[case.operation.label] += 1
    # a copy: the call adds its own headers to the dict it is given
    response = case.call(base_url=live.base, session=live.fuzz_session, headers=dict(headers or {}), timeout=30)
    STATUSES[response.status_code] += 1
    case.validate_response(response, checks=NEGATIVE_CHECKS, headers=dict(headers or {}))


DOCUMENT_SCHEMA = schemathesis.openapi.from_dict(load_document())


def conforms(path, method, response, **path_parameters):
    """The real response, checked against the description of that operation."""
    CASES["explicit " + method + " " + path] += 1
    STATUSES[response.status_code] += 1
    case = DOCUMENT_SCHEMA[path][method].Case(path_parameters=path_parameters or None)
    case.validate_response(response, checks=CHECKS)
    return response


def test_each_documented_answer_matches_the_description(live, key_headers):
    """Answers random generation rarely reaches: redirects, every refusal, limits, sessions."""
    url, remote = live.url, {"X-Forwarded-For": "203.0.113.7"}
    with_key = dict(key_headers)
    # sign-in and a session first (the fuzz runs below exhaust the sign-in throttle)
    signed = requests.post(url("/api/auth/login"), json={"api_key": live.fuzz_key}, timeout=10)
    assert conforms("/api/auth/login", "POST", signed).status_code == 200
    assert signed.cookies.get("comfyui_api_auth")
    cookie = {"comfyui_api_auth": signed.cookies["comfyui_api_auth"]}
    crossed = requests.post(url("/api/auth/logout"), cookies=cookie, headers={"Origin": "http://evil.example"}, timeout=10)
    assert conforms("/api/auth/logout", "POST", crossed).json()["error_code"] == "CROSS_ORIGIN"
    assert conforms("/api/auth/logout", "POST", requests.post(url("/api/auth/logout"), cookies=cookie,
                                                              timeout=10)).status_code == 200
    admin = requests.post(url("/api/auth/login"), json={"password": PASSWORD}, timeout=10)
    assert conforms("/api/auth/login", "POST", admin).json()["kind"] == "admin"
    for status, code, response in [
        (302, None, requests.get(url("/api/keys"), headers=dict(remote, Accept="text/html"), allow_redirects=False,
                                 timeout=10)),
        (401, "AUTH_REQUIRED", requests.get(url("/api/keys"), headers=remote, timeout=10)),
        (403, "SCOPE_REQUIRED", requests.get(url("/api/keys"), headers=with_key, timeout=10)),
        (401, "MALFORMED_KEY", requests.get(url("/api/keys"), headers={"X-API-Key": "comfy_x"}, timeout=10)),
        (404, "KEY_NOT_FOUND", requests.get(url("/api/keys/nokey"), timeout=10)),
        (400, "INVALID_FIELD", requests.get(url("/api/keys/nokey?days=0"), timeout=10)),
    ]:
        if "/api/keys/" in response.url:
            assert conforms("/api/keys/{key_id}", "GET", response, key_id="nokey").status_code == status, response.text
        else:
            assert conforms("/api/keys", "GET", response).status_code == status, response.text
        if code:
            assert response.json()["error_code"] == code
    assert conforms("/api/usage", "GET", requests.get(url("/api/usage"), timeout=10)).json()["error_code"] == "KEY_REQUIRED"
    bad_key = requests.get(url("/api/auth/status"), headers={"Authorization": "Bearer comfy_x"}, timeout=10)
    assert conforms("/api/auth/status", "GET", bad_key).json()["error_code"] == "MALFORMED_KEY"
    too_big = requests.post(url("/api/keys"), data=b'{"name": "' + b"a" * 70000 + b'"}',
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert conforms("/api/keys", "POST", too_big).status_code == 413
    plain_text = requests.post(url("/api/keys"), data=b'{"name": "t"}', headers={"Content-Type": "text/plain"}, timeout=10)
    assert conforms("/api/keys", "POST", plain_text).status_code == 415
    assert conforms("/api/audit", "GET", requests.get(url("/api/audit?limit=0"), timeout=10)).status_code == 400
    assert conforms("/login", "GET", requests.get(url("/login"), timeout=10)).status_code == 200
    # the hourly limit: a key allowed one request
    once = live.create_key("once", rate_limit=1)["api_key"]
    assert conforms("/api/usage", "GET", requests.get(url("/api/usage"), headers={"X-API-Key": once}, timeout=10)).ok
    limited = conforms("/api/usage", "GET", requests.get(url("/api/usage"), headers={"X-API-Key": once}, timeout=10))
    assert limited.status_code == 429 and limited.json()["error_code"] == "RATE_LIMIT_EXCEEDED"
    # a key's lifecycle: expired, from an address its allowlist does not have, rotated (the new secret once)
    expiring = live.create_key("expiring")
    expired = requests.patch(url(f"/api/keys/{expiring['key_id']}"), json={"expires_at": 1}, timeout=10)
    assert conforms("/api/keys/{key_id}", "PATCH", expired, key_id=expiring["key_id"]).json()["expired"] is True
    refused = conforms("/api/usage", "GET", requests.get(url("/api/usage"), headers={"X-API-Key": expiring["api_key"]},
                                                         timeout=10))
    assert refused.status_code == 401 and refused.json()["error_code"] == "KEY_EXPIRED"
    elsewhere = live.create_key("elsewhere", allowed_ips=["192.0.2.0/24"])["api_key"]
    refused = conforms("/api/usage", "GET", requests.get(url("/api/usage"), headers={"X-API-Key": elsewhere}, timeout=10))
    assert refused.status_code == 403 and refused.json()["error_code"] == "IP_NOT_ALLOWED"
    rotated = requests.post(url(f"/api/keys/{expiring['key_id']}/rotate"), json={"grace_seconds": 60}, timeout=10)
    assert conforms("/api/keys/{key_id}/rotate", "POST", rotated, key_id=expiring["key_id"]).json()["api_key"]
    # the sign-in throttle
    for _ in range(10):
        throttled = conforms("/api/auth/login", "POST", requests.post(url("/api/auth/login"),
                                                                      json={"password": "wrong password"}, timeout=10))
        if throttled.status_code == 429:
            break
    assert throttled.json()["error_code"] == "TOO_MANY_ATTEMPTS"
    # a method a route does not have: aiohttp's 405 (not per operation in OpenAPI)
    wrong_method = requests.put(url("/api/keys"), json={}, timeout=10)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]


@USAGE_SCHEMA.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_usage_with_a_key(case, live, key_headers):
    run_case(case, live, headers=key_headers)


@FULL.parametrize()
@settings(max_examples=4, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_route_as_a_plain_key_holder(case, live, key_headers):
    # a plain key is not an admin: admin routes answer a documented 403
    run_case(case, live, headers=key_headers)


@ADMIN_SCHEMA.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_route_as_the_local_admin(case, live):
    run_case(case, live)


def test_stateful_links(live):
    machine = configured(schemathesis.openapi.from_dict(load_document())).as_state_machine()

    class Links(machine):
        def get_call_kwargs(self, case):
            return {"base_url": live.base, "session": live.fuzz_session, "timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            CASES["stateful " + case.operation.label] += 1
            STATUSES[response.status_code] += 1
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Links.run(settings=settings(max_examples=STATEFUL_STEPS, stateful_step_count=6, derandomize=True,
                                deadline=None, database=None, suppress_health_check=list(HealthCheck)))
    assert any(label.startswith("stateful ") for label in CASES)


def test_served_description_is_the_file_and_admin_only(live, key_headers):
    served = live.get("/api/auth/openapi.json")
    assert served.status_code == 200
    assert served.headers["Content-Type"].startswith("application/json")
    assert served.json() == load_document()
    assert live.get("/auth/openapi.json").json() == load_document()
    # not an admin: an anonymous remote-looking caller, and a plain key
    for headers, status in (({"X-Forwarded-For": "203.0.113.7"}, 401),
                            ({"Host": "example.com"}, 401),
                            (key_headers, 403)):
        for path in ("/api/auth/openapi.json", "/auth/openapi.json"):
            refused = live.get(path, headers=headers)
            assert refused.status_code == status, (path, headers, refused.text)
            assert refused.json()["error_code"] in ("AUTH_REQUIRED", "SCOPE_REQUIRED")
            assert "paths" not in refused.text


def test_description_is_valid_openapi():
    validate = pytest.importorskip("openapi_spec_validator").validate
    document = load_document()
    validate(document)
    assert document["openapi"] == "3.0.3"


def test_fuzz_case_count(capsys):
    """Not a behaviour check: reports how many generated cases ran."""
    total = sum(CASES.values())
    with capsys.disabled():
        print(f"\nschemathesis: {total} cases over {len(CASES)} operations "
              f"(max_examples={MAX_EXAMPLES}, deterministic); statuses: "
              + ", ".join(f"{code}: {count}" for code, count in sorted(STATUSES.items())))
        print("stateful steps: " + ", ".join(f"{label[9:]}: {count}" for label, count in sorted(CASES.items())
                                             if label.startswith("stateful ")))
    assert total >= 100
