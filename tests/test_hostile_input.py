"""Hostile input against a live server, beyond test_keys_api.py and
test_access_matrix.py: malformed and oversized JSON, wrong media types,
tricky Unicode, numbers at and past the limits, repeated and conflicting
credential headers, protocol-level garbage, path spellings and encodings,
method overrides, and concurrent bursts.

Every case checks, besides its documented answer (a 4xx with a JSON
``error_code`` when the package answers; aiohttp's own plain-text 400 when
the HTTP parser refuses the request before any handler runs):

* never a 5xx, never a Python traceback in the body;
* the database is unchanged when the request was refused (the SQLite rows
  of keys, sessions and settings, and ``GET /api/keys``);
* the server still answers afterwards.

The number of hostile requests is printed at the end of the module.
"""

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import Host, package_module, query_database

key_format = package_module("core.keys")

PASSWORD = "hostile admin password"
REMOTE = [("X-Forwarded-For", "203.0.113.9")]  # defeats local trust: an anonymous remote caller
JSON = [("Content-Type", "application/json")]
COUNT = Counter()


# ---- plumbing ---------------------------------------------------------------------------------

class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {name.lower(): value for name, value in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def send(server, method, path, headers=(), body=None, timeout=20):
    """One request; headers go out exactly as listed (duplicates kept)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return note(Answer(response.status, response.getheaders(), response.read()))
    finally:
        connection.close()


def send_raw(server, data: bytes, timeout=20):
    """Bytes on the wire, for what http.client refuses to send (NUL, CR, raw UTF-8 in paths)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = [tuple(part.strip() for part in line.decode("latin-1").split(":", 1)) for line in lines[1:] if b":" in line]
    return note(Answer(status, headers, body))


def note(answer):
    """What every hostile request must satisfy."""
    COUNT["requests"] += 1
    assert answer.status < 500, answer
    assert b"Traceback" not in answer.body and b'File "' not in answer.body, answer
    return answer


def refused(answer, status, code=None):
    assert answer.status == status, answer
    error = answer.json()
    assert isinstance(error.get("error"), str) and isinstance(error.get("error_code"), str), answer
    if code is not None:
        assert error["error_code"] == code, answer
    return error


def parser_refused(answer):
    """aiohttp's HTTP parser refused the request before any handler ran: plain 400, no echo of a traceback."""
    assert answer.status in (400, 413, 414, 431), answer
    return answer


def state(server):
    keys = query_database(server, "SELECT id, key_id, key_hash, prefix, name, rate_limit, is_active, metadata, "
                                  "scopes, created_at, updated_at, deleted_at, revision, prompts_per_hour, "
                                  "max_waiting FROM api_auth_keys ORDER BY id")
    sessions = query_database(server, "SELECT token_hash, kind, key_pk, ended_at FROM api_auth_sessions ORDER BY id")
    meta = query_database(server, "SELECT name, number, text FROM api_auth_meta WHERE name <> 'revision' ORDER BY name")
    listing = requests.get(server.url("/api/keys"), timeout=20).json()["keys"]
    visible = [{k: v for k, v in key.items() if k not in ("last_used", "requests_this_hour")} for key in listing]
    return keys, sessions, meta, visible


@contextlib.contextmanager
def unchanged(server):
    before = state(server)
    yield
    after = state(server)
    assert after == before, "the database changed"
    assert requests.get(server.url("/api/auth/status"), timeout=10).status_code == 200


def alive(server):
    assert requests.get(server.url("/api/auth/status"), timeout=10).status_code == 200


def body_of(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def neighbour(key: str, keep_checksum: bool) -> str:
    """The key with one character of its random part changed; optionally a fresh valid checksum."""
    prefix, random_part = key_format.PREFIX, key[len(key_format.PREFIX):len(key_format.PREFIX) + key_format.RANDOM_LENGTH]
    changed = random_part[:-1] + ("A" if random_part[-1] != "A" else "B")
    checksum = key_format._checksum(changed) if keep_checksum else key[-key_format.CHECKSUM_LENGTH:]
    return prefix + changed + checksum


# ---- the server -------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def count_case():
    COUNT["cases"] += 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    host = Host(tmp_path_factory.mktemp("hostile"), env={
        "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD,
        "COMFYUI_API_AUTH_LOGIN_ATTEMPTS": "10000"})
    os.makedirs(host.workdir, exist_ok=True)
    host.start()
    yield host
    host.stop()


@pytest.fixture(scope="module")
def keys(server):
    plain = server.create_key("hostile plain", rate_limit=1_000_000_000)
    admin = server.create_key("hostile admin", rate_limit=1_000_000_000, scopes=["admin"])
    disabled = server.create_key("hostile disabled")
    assert server.patch(f"/api/keys/{disabled['key_id']}", json={"is_active": False}).status_code == 200
    deleted = server.create_key("hostile deleted")
    assert server.delete(f"/api/keys/{deleted['key_id']}").status_code == 200
    return {"plain": plain, "admin": admin, "disabled": disabled, "deleted": deleted}


@pytest.fixture(scope="module")
def victim(server):
    """A key that PATCH/DELETE attacks aim at; it must come out untouched."""
    return server.create_key("victim", rate_limit=7, metadata={"keep": True})


# ---- malformed and oversized JSON -----------------------------------------------------------

def nested_metadata(levels, opener=b'{"a":', closer=b"}"):
    return b'{"name": "nested", "metadata": {"a": ' + opener * levels + b"1" + closer * levels + b"}}"


MALFORMED = [
    ("truncated", b'{"name": "tru', 400, "INVALID_JSON"),
    ("truncated escape", b'{"name": "a\\u00', 400, "INVALID_JSON"),
    ("10k nested arrays", b"[" * 10000 + b"]" * 10000, 400, "INVALID_JSON"),
    ("10k nested objects in metadata", nested_metadata(10000), 400, "INVALID_JSON"),
    ("600 nested objects in metadata", nested_metadata(600), 400, "INVALID_FIELD"),
    ("900 nested arrays in metadata", nested_metadata(900, b"[", b"]"), 400, "INVALID_FIELD"),
    ("1e400 rate_limit", b'{"name": "n", "rate_limit": 1e400}', 400, "INVALID_FIELD"),
    ("-1e400 in metadata", b'{"name": "n", "metadata": {"x": -1e400}}', 400, "INVALID_FIELD"),
    ("5000-digit integer", b'{"name": "n", "rate_limit": ' + b"9" * 5000 + b"}", 400, "INVALID_JSON"),
    ("NaN", b'{"name": "n", "metadata": {"x": NaN}}', 400, "INVALID_JSON"),
    ("-Infinity", b'{"name": "n", "rate_limit": -Infinity}', 400, "INVALID_JSON"),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + b'{"name": "bom"}', 400, "INVALID_JSON"),
    ("UTF-16 with BOM", '{"name": "utf16"}'.encode("utf-16"), 400, "INVALID_JSON"),
    ("invalid UTF-8", b'{"name": "\xc3\x28"}', 400, "INVALID_JSON"),
    ("overlong UTF-8 slash", b'{"name": "\xc0\xaf"}', 400, "INVALID_JSON"),
    ("UTF-8-encoded surrogate", b'{"name": "\xed\xa0\x80"}', 400, "INVALID_JSON"),
    ("Latin-1 bytes", '{"name": "café"}'.encode("latin-1"), 400, "INVALID_JSON"),
    ("raw NUL in a string", b'{"name": "a\x00b"}', 400, "INVALID_JSON"),
    ("escaped NUL in name", b'{"name": "a\\u0000b"}', 400, "INVALID_FIELD"),
    ("lone surrogate in name", b'{"name": "\\udfff"}', 400, "INVALID_FIELD"),
    ("lone surrogate metadata key", b'{"name": "n", "metadata": {"\\ud800": 1}}', 400, "INVALID_FIELD"),
    ("escaped forbidden field", b'{"name": "n", "\\u0061pi_key": "comfy_mine"}', 400, "UNKNOWN_FIELD"),
    ("escaped duplicate field", b'{"name": "a", "n\\u0061me": "b"}', 400, "DUPLICATE_FIELD"),
    ("empty body", b"", 400, "INVALID_JSON"),
    ("white space only", b" \r\n\t ", 400, "INVALID_JSON"),
    ("trailing garbage", b'{"name": "x"} x', 400, "INVALID_JSON"),
    ("two documents", b'{"name": "x"}{"name": "y"}', 400, "INVALID_JSON"),
    ("comment", b'{"name": "x" /* c */}', 400, "INVALID_JSON"),
    ("single quotes", b"{'name': 'x'}", 400, "INVALID_JSON"),
    ("trailing comma", b'{"name": "x",}', 400, "INVALID_JSON"),
    ("top-level null", b"null", 400, "INVALID_BODY"),
    ("top-level string", b'"name"', 400, "INVALID_BODY"),
    ("top-level array", b'[{"name": "x"}]', 400, "INVALID_BODY"),
    ("64 KiB + 1", b'{"name": "' + b"a" * 65536 + b'"}', 413, "BODY_TOO_LARGE"),
]


@pytest.mark.parametrize("target", ["POST /api/keys", "POST /keys", "PATCH /api/keys/{victim}"])
@pytest.mark.parametrize("label, body, status, code", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_json_is_refused_and_writes_nothing(server, victim, target, label, body, status, code):
    method, path = target.split(" ")
    path = path.replace("{victim}", victim["key_id"])
    with unchanged(server):
        refused(send(server, method, path, JSON, body), status, code)


def test_ten_megabyte_bodies_are_refused_early(server):
    big = b'{"name": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    with unchanged(server):
        # with a Content-Length...
        answer = requests.post(server.url("/api/keys"), data=big, headers=dict(JSON), timeout=60)
        refused(note(Answer(answer.status_code, answer.headers.items(), answer.content)), 413, "BODY_TOO_LARGE")

        # ...and chunked, with none
        def chunks():
            for start in range(0, len(big), 1 << 20):
                yield big[start:start + (1 << 20)]
        answer = requests.post(server.url("/api/keys"), data=chunks(), headers=dict(JSON), timeout=60)
        refused(note(Answer(answer.status_code, answer.headers.items(), answer.content)), 413, "BODY_TOO_LARGE")
        # sign-in and the password have a 4 KiB limit
        for method, path in (("POST", "/api/auth/login"), ("PUT", "/api/auth/password")):
            refused(send(server, method, path, JSON, b'{"password": "' + b"p" * 5000 + b'"}'), 413, "BODY_TOO_LARGE")


def drip(server, head: bytes, pieces, pause=0.2):
    """Send a request in pieces with pauses, as a slow network delivers it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head)
        for piece in pieces:
            time.sleep(pause)
            sock.sendall(piece)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return note(Answer(int(head.split()[1]), [], body))


def test_a_body_that_arrives_in_pieces_is_read_whole(server):
    """A valid body split across TCP segments (slow link, proxy) is not truncated into 'invalid JSON'."""
    body = body_of({"name": "dripped", "metadata": {"k": "x" * 3000}})
    thirds = [body[:100], body[100:2000], body[2000:]]
    head = (b"POST /api/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    answer = drip(server, head, thirds)
    assert answer.status == 200, answer
    assert answer.json()["name"] == "dripped" and answer.json()["metadata"] == {"k": "x" * 3000}
    # chunked transfer coding, no Content-Length
    head = (b"POST /api/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    chunked = [b"%x\r\n%s\r\n" % (len(part), part) for part in thirds] + [b"0\r\n\r\n"]
    answer = drip(server, head, chunked)
    assert answer.status == 200, answer
    assert answer.json()["metadata"] == {"k": "x" * 3000}
    # and a body over the limit that arrives in pieces is still 413, not "invalid JSON"
    big = b'{"name": "' + b"a" * 70000 + b'"}'
    head = (b"POST /api/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    with unchanged(server):
        pieces = [b"%x\r\n%s\r\n" % (len(part), part) for part in (big[:5], big[5:40000], big[40000:])]
        refused(drip(server, head, pieces + [b"0\r\n\r\n"], pause=0.1), 413, "BODY_TOO_LARGE")


AUTH_BODIES = [
    ("truncated", b'{"password": "abc', 400, 400, "INVALID_JSON"),
    ("1000 nested arrays", b"[" * 1000 + b"]" * 1000, 400, 400, "INVALID_JSON"),
    ("invalid UTF-8", b'{"password": "\xff\xfe"}', 400, 400, "INVALID_JSON"),
    ("BOM", b"\xef\xbb\xbf" + b'{"password": "x"}', 400, 400, "INVALID_JSON"),
    ("array", b'["password"]', 400, 400, "INVALID_BODY"),
    ("both fields", b'{"password": "abcdefgh", "api_key": "comfy_x"}', 400, 400, None),
    ("duplicate field", b'{"password": "abcdefgh", "password": "ijklmnop"}', 400, 400, "DUPLICATE_FIELD"),
    ("number", b'{"password": 12345678}', 400, 400, None),
    ("empty string", b'{"password": ""}', 400, 400, None),
    ("unknown field", b'{"passwd": "abcdefgh"}', 400, 400, None),
    # a password that cannot be UTF-8 encoded: refused, never a crash in bcrypt
    ("lone surrogate", b'{"password": "\\ud800abcdefghij"}', 401, 400, None),
    ("73 bytes of UTF-8 in 37 characters", body_of({"password": "\u00e9" * 36 + "x"}), 401, 400, None),
    ("7 characters", b'{"password": "1234567"}', 401, 400, None),
]


@pytest.mark.parametrize("label, body, login_status, password_status, code", AUTH_BODIES,
                         ids=[case[0] for case in AUTH_BODIES])
def test_sign_in_and_password_bodies(server, label, body, login_status, password_status, code):
    with unchanged(server):
        answer = send(server, "POST", "/api/auth/login", REMOTE + JSON, body)
        refused(answer, login_status, code if login_status == 400 else "INVALID_CREDENTIALS")
        assert "set-cookie" not in answer.headers
        refused(send(server, "PUT", "/api/auth/password", JSON, body), password_status, code)


# ---- wrong media types --------------------------------------------------------------------------

MEDIA_TYPES = [
    ("text/plain", b'{"name": "m"}'),
    ("text/json", b'{"name": "m"}'),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nm\r\n--b--\r\n'),
    (None, b'{"name": "m"}'),
    ("", b'{"name": "m"}'),
    ("application/jsonp", b'{"name": "m"}'),
    ("application/json-patch+json", b'{"name": "m"}'),
    ("application/vnd.api+json", b'{"name": "m"}'),
    ("application/x-json", b'{"name": "m"}'),
    # A body declared Latin-1 is not read as UTF-8: "Ã©" in Latin-1 is the UTF-8 of "é".
    ("application/json; charset=latin-1", '{"name": "Ã©"}'.encode("latin-1")),
    ("application/json; charset=iso-8859-1", b'{"name": "plain ascii"}'),
    ("application/json; charset=utf-16", '{"name": "m"}'.encode("utf-16")),
]


@pytest.mark.parametrize("target", ["POST /api/keys", "PATCH /api/keys/{target}", "PUT /api/auth/password"])
@pytest.mark.parametrize("content_type, body", MEDIA_TYPES, ids=[str(case[0]) for case in MEDIA_TYPES])
def test_wrong_media_types_are_refused(server, target, content_type, body):
    method, path = target.split(" ")
    if "{target}" in path:  # a key of its own, so a wrongly accepted body harms no other test
        path = path.replace("{target}", server.create_key("media target")["key_id"])
    if target.startswith("PUT"):
        body = body.replace(b'"name"', b'"password"').replace(b'"m"', b'"longenough"')
    headers = [] if content_type is None else [("Content-Type", content_type)]
    with unchanged(server):
        answer = send(server, method, path, headers, body)
        if content_type and content_type.endswith("utf-16"):
            refused(answer, answer.status if answer.status in (400, 415) else 415)  # not UTF-8 JSON: either is honest
        else:
            refused(answer, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "APPLICATION/JSON",
                                          "application/json;charset=UTF-8", 'application/json; charset="utf-8"'])
def test_json_media_type_spellings_that_are_fine(server, content_type):
    answer = send(server, "POST", "/api/keys", [("Content-Type", content_type)], body_of({"name": "é ok"}))
    assert answer.status == 200, answer
    assert answer.json()["name"] == "é ok"


# ---- names ----------------------------------------------------------------------------------------

NAMES = [
    # (label, JSON text of the name, status, name stored)
    ("100 ASCII", body_of("x" * 100), 200, "x" * 100),
    ("101 ASCII", body_of("x" * 101), 400, None),
    ("100 emoji = 200 UTF-16 units, 400 bytes", body_of("\U0001F600" * 100), 200, "\U0001F600" * 100),
    ("101 emoji", body_of("\U0001F600" * 101), 400, None),
    ("100 code points, 50 graphemes", body_of("e\u0301" * 50), 200, "e\u0301" * 50),
    ("102 code points, 51 graphemes", body_of("e\u0301" * 51), 400, None),
    ("100 CJK", body_of("\u6f22" * 100), 200, "\u6f22" * 100),
    ("101 CJK", body_of("\u6f22" * 101), 400, None),
    ("100 after trimming", body_of("  \u3000" + "x" * 100 + " \u2003"), 200, "x" * 100),
    ("Unicode white space only", body_of("\u3000\u2003\u00a0"), 400, None),
    ("escaped surrogate pair", b'"\\ud83d\\ude00"', 200, "\U0001F600"),
    ("lone high surrogate", b'"a\\ud83d"', 400, None),
    ("zero-width space inside", body_of("a\u200bb"), 200, "a\u200bb"),
    ("ZWJ emoji sequence", body_of("\U0001F468\u200d\U0001F469\u200d\U0001F467"), 200,
     "\U0001F468\u200d\U0001F469\u200d\U0001F467"),
    ("markup kept verbatim", body_of("<img src=x onerror=alert(1)>"), 200, "<img src=x onerror=alert(1)>"),
    ("RTL override", body_of("invoice\u202egpj.exe"), 400, None),
    ("bidi isolate", body_of("admin\u2067x\u2069"), 400, None),
    ("NUL", body_of("a\u0000b"), 400, None),
    ("DEL", body_of("a\u007fb"), 400, None),
    ("C1 NEL", body_of("a\u0085b"), 400, None),
    ("newline inside", body_of("a\nb"), 400, None),
    ("ANSI escape", body_of("\u001b[31mred"), 400, None),
    ("60 KB", body_of("x" * 60000), 400, None),
]


@pytest.mark.parametrize("label, name_json, status, stored", NAMES, ids=[case[0] for case in NAMES])
def test_names(server, victim, label, name_json, status, stored):
    body = b'{"name": ' + name_json + b"}"
    if status == 400:
        with unchanged(server):
            assert refused(send(server, "POST", "/api/keys", JSON, body), 400)["field"] == "name"
            assert refused(send(server, "PATCH", f"/api/keys/{victim['key_id']}", JSON, body), 400)["field"] == "name"
        return
    answer = send(server, "POST", "/api/keys", JSON, body)
    assert answer.status == 200, answer
    assert answer.json()["name"] == stored
    again = requests.get(server.url(f"/api/keys/{answer.json()['key_id']}"), timeout=10).json()
    assert again["name"] == stored


# ---- metadata ----------------------------------------------------------------------------------

def nest(levels, leaf=1):
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def metadata_of_size(size, filler="x"):
    """A metadata object whose UTF-8 JSON serialization is exactly ``size`` bytes."""
    overhead = len(json.dumps({"k": ""}).encode())
    unit = len(filler.encode())
    count, rest = divmod(size - overhead, unit)
    return {"k": filler * count + "x" * rest}


METADATA = [
    ("depth 8", nest(8), 200),
    ("depth 9", nest(9), 400),
    ("depth 9 through lists", {"a": [[[[[[[[1]]]]]]]]}, 400),
    ("exactly 16384 bytes", metadata_of_size(16384), 200),
    ("16385 bytes", metadata_of_size(16385), 400),
    ("16384 bytes of 2-byte characters (49 KB escaped)", metadata_of_size(16384, "\u00e9"), 200),
    ("16385 bytes of 2-byte characters", metadata_of_size(16385, "\u00e9"), 400),
    ("16384 bytes of emoji", metadata_of_size(16384, "\U0001F600"), 200),
    ("3000 keys", {f"k{i}": i for i in range(3000)}, 400),
    ("NUL and control characters round-trip", {"k\u0000": "v\u0000\u001b", "\u202e": "rtl"}, 200),
    ("__proto__ and constructor", {"__proto__": {"admin": True}, "constructor": "x"}, 200),
]


@pytest.mark.parametrize("label, metadata, status", METADATA, ids=[case[0] for case in METADATA])
def test_metadata(server, victim, label, metadata, status):
    body = body_of({"name": "meta", "metadata": metadata})
    if status == 400:
        with unchanged(server):
            assert refused(send(server, "POST", "/api/keys", JSON, body), 400)["field"] == "metadata"
            patch = body_of({"metadata": metadata})
            assert refused(send(server, "PATCH", f"/api/keys/{victim['key_id']}", JSON, patch), 400)["field"] == "metadata"
        return
    answer = send(server, "POST", "/api/keys", JSON, body)
    assert answer.status == 200, answer
    stored = requests.get(server.url(f"/api/keys/{answer.json()['key_id']}"), timeout=10).json()["metadata"]
    assert stored == metadata


# ---- numbers and other field values --------------------------------------------------------------

FIELD_VALUES = [
    # (label, raw JSON fields after "name", status, field at fault)
    ("rate_limit 1e9 + 1", b'"rate_limit": 1000000001', 400, "rate_limit"),
    ("rate_limit 2**63", b'"rate_limit": 9223372036854775808', 400, "rate_limit"),
    ("rate_limit 2**64", b'"rate_limit": 18446744073709551616', 400, "rate_limit"),
    ("rate_limit -2**63", b'"rate_limit": -9223372036854775808', 400, "rate_limit"),
    ("rate_limit 10**400", b'"rate_limit": 1' + b"0" * 400, 400, "rate_limit"),
    ("rate_limit -1", b'"rate_limit": -1', 400, "rate_limit"),
    ("rate_limit 1e2", b'"rate_limit": 1e2', 400, "rate_limit"),
    ("rate_limit 1E2", b'"rate_limit": 1E2', 400, "rate_limit"),
    ("rate_limit 100.0", b'"rate_limit": 100.0', 400, "rate_limit"),
    ("rate_limit -0.0", b'"rate_limit": -0.0', 400, "rate_limit"),
    ("rate_limit false", b'"rate_limit": false', 400, "rate_limit"),
    ("rate_limit []", b'"rate_limit": []', 400, "rate_limit"),
    ("rate_limit {}", b'"rate_limit": {}', 400, "rate_limit"),
    ("job_limits false", b'"job_limits": false', 400, "job_limits"),
    ("job_limits 0", b'"job_limits": 0', 400, "job_limits"),
    ("job_limits empty string", b'"job_limits": ""', 400, "job_limits"),
    ("job_limits []", b'"job_limits": []', 400, "job_limits"),
    ("prompts_per_hour 1e9 + 1", b'"job_limits": {"prompts_per_hour": 1000000001}', 400, "job_limits"),
    ("prompts_per_hour -1", b'"job_limits": {"prompts_per_hour": -1}', 400, "job_limits"),
    ("max_waiting 1.5", b'"job_limits": {"max_waiting": 1.5}', 400, "job_limits"),
    ("max_waiting true", b'"job_limits": {"max_waiting": true}', 400, "job_limits"),
    ("max_waiting \"5\"", b'"job_limits": {"max_waiting": "5"}', 400, "job_limits"),
    ("job_limits unknown field", b'"job_limits": {"max_waiting": 1, "per_day": 2}', 400, "job_limits"),
    ("scopes ADMIN", b'"scopes": ["ADMIN"]', 400, "scopes"),
    ("scopes padded", b'"scopes": [" admin"]', 400, "scopes"),
    ("scopes with NUL", b'"scopes": ["admin\\u0000"]', 400, "scopes"),
    ("scopes homoglyph", '"scopes": ["\u0430dmin"]'.encode(), 400, "scopes"),
    ("scopes string", b'"scopes": "admin"', 400, "scopes"),
    ("scopes nested", b'"scopes": [["admin"]]', 400, "scopes"),
    ("scopes null item", b'"scopes": [null]', 400, "scopes"),
    ("smuggled is_admin", b'"is_admin": true', 400, "is_admin"),
    ("smuggled key_hash", b'"key_hash": "' + b"0" * 64 + b'"', 400, "key_hash"),
    ("smuggled key_id", b'"key_id": "chosen"', 400, "key_id"),
]


@pytest.mark.parametrize("label, fields, status, field", FIELD_VALUES, ids=[case[0] for case in FIELD_VALUES])
def test_field_values_out_of_range_are_refused(server, victim, label, fields, status, field):
    with unchanged(server):
        answer = send(server, "POST", "/api/keys", JSON, b'{"name": "numbers", ' + fields + b"}")
        assert refused(answer, status)["field"] == field
        answer = send(server, "PATCH", f"/api/keys/{victim['key_id']}", JSON, b"{" + fields + b"}")
        assert refused(answer, status)["field"] == field


@pytest.mark.parametrize("fields, expected", [
    (b'"rate_limit": -0', 0),                 # JSON -0 is the integer zero
    (b'"rate_limit": 1000000000', 1_000_000_000),
    (b'"rate_limit": 0', 0),
])
def test_rate_limit_edges_that_are_fine(server, fields, expected):
    answer = send(server, "POST", "/api/keys", JSON, b'{"name": "edge", ' + fields + b"}")
    assert answer.status == 200, answer
    assert answer.json()["rate_limit"] == expected and type(answer.json()["rate_limit"]) is int


@pytest.mark.parametrize("query", [
    "days=0", "days=367", "days=1e2", "days=0x10", "days=%EF%BC%91%EF%BC%90", "days=10%20", "days=%2B10",
    "days=-0", "days=00010", "days=" + "9" * 5000, "days=", "days=10%00", "days=nan", "days=1.0",
])
def test_bad_days_on_key_and_usage(server, victim, keys, query):
    assert refused(send(server, "GET", f"/api/keys/{victim['key_id']}?{query}"), 400)["field"] == "days"
    bearer = [("Authorization", f"Bearer {keys['plain']['api_key']}")]
    assert refused(send(server, "GET", f"/api/usage?{query}", bearer), 400)["field"] == "days"


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=1e3", "limit"), ("limit=", "limit"),
    ("limit=-5", "limit"), ("limit=%EF%BC%95", "limit"), ("before=0", "before"), ("before=-1", "before"),
    ("before=4611686018427387905", "before"), ("before=" + "9" * 100, "before"), ("before=1.5", "before"),
])
def test_bad_audit_paging(server, query, field):
    assert refused(send(server, "GET", f"/api/audit?{query}"), 400)["field"] == field


# ---- credential headers ----------------------------------------------------------------------------

def refusal_headers(keys):
    admin, plain = keys["admin"]["api_key"], keys["plain"]["api_key"]
    long_key = "comfy_" + "a" * 8000
    return [
        ("empty X-API-Key", [("X-API-Key", "")], "MALFORMED_CREDENTIALS"),
        ("blank X-API-Key", [("X-API-Key", "   ")], "MALFORMED_CREDENTIALS"),
        ("wrong checksum", [("Authorization", f"Bearer {neighbour(admin, keep_checksum=False)}")], "MALFORMED_KEY"),
        ("neighbour with a valid checksum", [("Authorization", f"Bearer {neighbour(admin, keep_checksum=True)}")],
         "INVALID_KEY"),
        ("GitHub token", [("Authorization", "Bearer ghp_" + "a1B2" * 9)], "MALFORMED_KEY"),
        ("OpenAI-style key", [("X-API-Key", "sk_live_" + "a1B2" * 10)], "MALFORMED_KEY"),
        ("valid key + junk", [("Authorization", f"Bearer {admin}x")], "MALFORMED_KEY"),
        ("valid key + space + junk", [("Authorization", f"Bearer {admin} junk")], "MALFORMED_KEY"),
        ("two keys in one header", [("Authorization", f"Bearer {admin}, Bearer {plain}")], "MALFORMED_KEY"),
        ("Bearer inside X-API-Key", [("X-API-Key", f"Bearer {admin}")], "MALFORMED_KEY"),
        ("key in other case", [("X-API-Key", admin.swapcase())], "MALFORMED_KEY"),
        ("8 KB key", [("X-API-Key", long_key)], "MALFORMED_KEY"),
        ("non-ASCII key", [("X-API-Key", "comfy_\u00e9\u00e9")], "MALFORMED_KEY"),
        ("deleted key", [("X-API-Key", keys["deleted"]["api_key"])], "INVALID_KEY"),
        ("disabled key", [("X-API-Key", keys["disabled"]["api_key"])], "KEY_DISABLED"),
        ("Authorization and X-API-Key differ", [("Authorization", f"Bearer {plain}"), ("X-API-Key", admin)],
         "CONFLICTING_CREDENTIALS"),
        ("X-API-Key and Authorization differ", [("X-API-Key", plain), ("Authorization", f"Bearer {admin}")],
         "CONFLICTING_CREDENTIALS"),
        # Repeated headers are ambiguous: a proxy may read the other one. Never pick one silently.
        ("two Authorization: admin key, then junk", [("Authorization", f"Bearer {admin}"),
                                                     ("Authorization", "Bearer junk")], None),
        ("two Authorization: junk, then admin key", [("Authorization", "Bearer junk"),
                                                     ("Authorization", f"Bearer {admin}")], None),
        ("two Authorization: admin key, then plain key", [("Authorization", f"Bearer {admin}"),
                                                          ("Authorization", f"Bearer {plain}")], None),
        ("two X-API-Key: admin key, then plain key", [("X-API-Key", admin), ("X-API-Key", plain)], None),
        ("two X-API-Key: admin key, then junk", [("X-API-Key", admin), ("X-API-Key", "junk")], None),
    ]


REFUSAL_LABELS = [case[0] for case in refusal_headers({
    "admin": {"api_key": key_format.generate_key()}, "plain": {"api_key": key_format.generate_key()},
    "deleted": {"api_key": ""}, "disabled": {"api_key": ""}})]


@pytest.mark.parametrize("label", REFUSAL_LABELS)
def test_failing_credentials_are_401_and_create_nothing(server, keys, label):
    """POST /api/keys from a remote client: only a working admin credential could create a key."""
    headers, code = {case[0]: case[1:] for case in refusal_headers(keys)}[label]
    with unchanged(server):
        answer = send(server, "POST", "/api/keys", REMOTE + JSON + headers, b'{"name": "via header"}')
        error = refused(answer, 401, code)
        assert error["error_code"] != "AUTH_REQUIRED", answer  # the header was seen, not ignored


FALL_THROUGH = {
    "Basic first, then a failing Bearer": [("Authorization", "Basic Zm9vOmJhcg=="),
                                           ("Authorization", "Bearer comfy_notakey")],
    "Bearer, a tab, a failing key": [("Authorization", "Bearer\tcomfy_notakey")],
    "Basic, then a failing X-API-Key": [("Authorization", "Basic Zm9v"), ("X-API-Key", "comfy_notakey")],
    "failing X-API-Key twice": [("X-API-Key", "comfy_notakey"), ("X-API-Key", "comfy_notakey")],
}


@pytest.mark.parametrize("label", list(FALL_THROUGH))
def test_a_presented_credential_never_falls_through_to_anonymous(server, label):
    """On a route anonymous callers may use, a credential that fails must still be 401."""
    answer = send(server, "GET", "/api/auth/status", REMOTE + FALL_THROUGH[label])
    refused(answer, 401)


def test_credential_spellings_that_are_accepted(server, keys):
    plain = keys["plain"]
    for label, headers in [
        ("two spaces after Bearer", [("Authorization", f"Bearer  {plain['api_key']}")]),
        ("lowercase scheme", [("Authorization", f"bearer {plain['api_key']}")]),
        ("uppercase scheme", [("Authorization", f"BEARER {plain['api_key']}")]),
        ("same key in both headers", [("Authorization", f"Bearer {plain['api_key']}"), ("X-API-Key", plain["api_key"])]),
        ("surrounding white space", [("X-API-Key", f"  {plain['api_key']}  ")]),
    ]:
        answer = send(server, "GET", "/api/usage", REMOTE + headers)
        assert answer.status == 200, (label, answer)
        assert answer.json()["key_id"] == plain["key_id"], label
        assert answer.headers["x-ratelimit-limit"] == str(plain["rate_limit"])


@pytest.mark.parametrize("scheme", ["Basic Zm9vOmJhcg==", "Digest username=\"a\"", "Token {key}", "Basic {key}",
                                    "ApiKey {key}", "NotBearer {key}", "Bearer", "Bearer    "])
def test_other_authorization_schemes_are_treated_as_absent(server, keys, scheme):
    header = [("Authorization", scheme.replace("{key}", keys["admin"]["api_key"]))]
    # absent credential: the key route needs a key...
    refused(send(server, "GET", "/api/usage", header), 401, "KEY_REQUIRED")
    # ...a remote caller is anonymous (never admin through another scheme)...
    with unchanged(server):
        refused(send(server, "POST", "/api/keys", REMOTE + JSON + header, b'{"name": "basic"}'), 401, "AUTH_REQUIRED")
    # ...and the local admin stays the local admin
    assert send(server, "GET", "/api/keys", header).status == 200


def request_bytes(path=b"/api/keys", headers=b"", body=b'{"name": "raw"}', method=b"POST"):
    return (method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + headers + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def test_protocol_level_garbage(server, keys):
    admin = keys["admin"]["api_key"].encode()
    remote = b"X-Forwarded-For: 203.0.113.9\r\n"
    parser_cases = [
        ("NUL in X-API-Key", request_bytes(headers=remote + b"X-API-Key: comfy_\x00abc\r\n")),
        ("NUL after a real key", request_bytes(headers=remote + b"Authorization: Bearer " + admin + b"\x00\r\n")),
        ("CR inside a header value", request_bytes(headers=remote + b"X-API-Key: a\rb\r\n")),
        ("NUL in the path", request_bytes(path=b"/api/keys\x00")),
        ("9 KB path", request_bytes(path=b"/api/keys/" + b"a" * 9000, method=b"GET", body=b"")),
        ("100 KB path", request_bytes(path=b"/api/keys/" + b"a" * 100_000, method=b"GET", body=b"")),
        ("100 KB header", request_bytes(headers=remote + b"Authorization: Bearer " + b"a" * 100_000 + b"\r\n")),
        ("200 headers", request_bytes(headers=remote + b"".join(b"X-H%d: v\r\n" % i for i in range(200)))),
        ("backslash path", request_bytes(path=b"\\api\\keys")),
        ("space in path", request_bytes(path=b"/api/ keys")),
    ]
    for _label, data in parser_cases:
        with unchanged(server):
            parser_refused(send_raw(server, data))
    package_cases = [
        ("Latin-1 bytes in X-API-Key", request_bytes(headers=remote + b"X-API-Key: comfy_\xff\xfe\r\n"), "MALFORMED_KEY"),
        ("UTF-8 in Authorization", request_bytes(headers=remote + "Authorization: Bearer comfy_é\r\n".encode()),
         "MALFORMED_KEY"),
        ("obs-fold continuation", request_bytes(headers=remote + b"X-API-Key: comfy_a\r\n b\r\n"), None),
    ]
    for _label, data, code in package_cases:
        with unchanged(server):
            answer = send_raw(server, data)
            if answer.status == 400 and not answer.body.startswith(b"{"):
                parser_refused(answer)  # the parser may refuse obs-fold outright
            else:
                refused(answer, 401, code)


def test_long_paths_and_headers_the_parser_accepts(server, keys):
    # an 8 KB key_id: routed, answered 404, and the echo is bounded
    answer = send(server, "GET", "/api/keys/" + "a" * 8000)
    refused(answer, 404, "KEY_NOT_FOUND")
    assert len(answer.body) < 500
    # NUL inside key_id (percent-encoded)
    refused(send(server, "DELETE", "/api/keys/abc%00def"), 404, "KEY_NOT_FOUND")
    # an 8 KB cookie is simply not a session
    answer = send(server, "GET", "/api/auth/status", REMOTE + [("Cookie", "comfyui_api_auth=" + "a" * 8000)])
    assert answer.status == 200 and answer.json()["authenticated"] is False
    answer = send(server, "GET", "/api/auth/status", REMOTE + [("Cookie", "comfyui_api_auth=\u00e9\u00ff")])
    assert answer.status == 200 and answer.json()["authenticated"] is False


# ---- path spellings and encodings ------------------------------------------------------------------

def spellings(key_id):
    return [
        "/api%252Fkeys", "/api/keys%252F", "/api%5Ckeys", "/api\\keys", "/api/keys\\", "/api/keys%5C",
        "/api/k%D0%B5ys",                    # Cyrillic ie
        "/api/%EF%BD%8Beys",                 # fullwidth k
        "/api/%E2%84%AAeys",                 # Kelvin sign (NFKC: K)
        "/api/keys%EF%BC%8F", "/%EF%BC%8Fapi%EF%BC%8Fkeys",  # fullwidth solidus
        "/api/keys%E2%80%8B",                # zero-width space
        "/api%2Fkeys%2F" + key_id,
        "/api/keys/%2e%2e/keys", "/api/keys/..%2f", "/api/keys/%2e%2e%2fkeys", "/api/keys/%252e%252e%252fkeys",
        "/api/keys/.;/", "/api/keys;/", "/api/keys%3B", "/api/keys%3F", "/api/keys%23", "/api/keys%u002F",
        "/api/keys%00", "/api/keys/%00", "/api/keys/" + key_id + "%2F", "/api/keys/" + key_id + "%2F..",
        "/api/keys/" + key_id + "/..", "/api/keys/" + key_id + "%00", "/api/keys/" + key_id + "%20",
        "/api/keys/%C0%AF", "/api/keys/%FF", "/api/keys/%E2%80%AE" + key_id,
        "/%2561pi/keys", "/api/%256Beys", "/API%2Fkeys", "/api/./keys", "/api//keys", "/./api/keys",
        "/api/keys/../keys", "/api/keys/" + key_id + "/../" + key_id,
    ]


def test_path_spellings_never_reach_key_management_without_admin(server, keys, victim):
    non_admin = {"anonymous": REMOTE, "plain key": [("X-API-Key", keys["plain"]["api_key"])]}
    for who, headers in non_admin.items():
        for path in spellings(victim["key_id"]):
            with unchanged(server):
                for method, body in (("GET", None), ("POST", b'{"name": "spelled"}'), ("DELETE", None),
                                     ("PATCH", b'{"rate_limit": 1000000000}')):
                    answer = send(server, method, path, headers + JSON, body)
                    assert answer.status in (400, 401, 403, 404, 405), (who, method, path, answer)
                    for secret_shape in (b'"keys"', b"api_key", b"key_hash", b'"rate_limit"'):
                        assert secret_shape not in answer.body, (who, method, path, answer)


def test_path_spellings_as_the_local_admin_never_fail_badly(server, victim):
    decoy = server.create_key("decoy")["key_id"]  # some spellings may name it exactly: it may go
    for path in spellings(decoy):
        for method in ("GET", "DELETE"):
            send(server, method, path)
    # raw bytes: UTF-8 and Latin-1 in the request line
    for raw in ("/api/k\u0435ys".encode(), b"/api/keys/\xff", "/api/\u212aeys".encode()):
        send_raw(server, request_bytes(path=raw, method=b"GET", body=b""))
    assert requests.get(server.url(f"/api/keys/{victim['key_id']}"), timeout=10).status_code == 200


# ---- method overrides --------------------------------------------------------------------------------

def test_method_overrides_are_not_honoured(server, keys, victim):
    key_path = f"/api/keys/{victim['key_id']}"
    override_headers = ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]
    with unchanged(server):
        for header in override_headers:
            # the local admin: POST to a key is 405, whatever the header asks
            answer = send(server, "POST", key_path, JSON + [(header, "DELETE")], b"{}")
            assert answer.status == 405, (header, answer)
            assert "POST" not in answer.headers.get("allow", "")
            answer = send(server, "POST", key_path, JSON + [(header, "PATCH")], b'{"rate_limit": 1}')
            assert answer.status == 405, (header, answer)
            # a plain key cannot create by asking for a "safe" method
            answer = send(server, "POST", "/api/keys", JSON + [(header, "GET"), ("X-API-Key", keys["plain"]["api_key"])],
                          b'{"name": "override"}')
            refused(answer, 403, "SCOPE_REQUIRED")
            # nor can anonymous
            refused(send(server, "POST", "/api/keys", REMOTE + JSON + [(header, "GET")], b'{"name": "o"}'), 401)
        for query in ("_method=DELETE", "_method=PATCH", "method=DELETE", "X-HTTP-Method-Override=DELETE"):
            assert send(server, "POST", f"{key_path}?{query}", JSON, b'{"rate_limit": 1}').status == 405
            assert send(server, "GET", f"{key_path}?{query}").status == 200
            answer = send(server, "GET", f"/api/keys?{query.replace('DELETE', 'POST')}", JSON, b'{"name": "q"}')
            assert answer.status == 200 and "keys" in answer.json()
            refused(send(server, "POST", "/api/keys?_method=GET", REMOTE + JSON, b'{"name": "q"}'), 401)
    assert requests.get(server.url(key_path), timeout=10).json()["rate_limit"] == 7


# ---- concurrent bursts ---------------------------------------------------------------------------------

def test_one_hundred_parallel_creates_give_one_hundred_working_keys(server):
    before = {key["key_id"] for key in requests.get(server.url("/api/keys"), timeout=20).json()["keys"]}
    barrier = threading.Barrier(100)

    def create(index):
        barrier.wait()
        return requests.post(server.url("/api/keys"), json={"name": f"burst {index}", "rate_limit": 5}, timeout=60)

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(create, range(100)))
    COUNT["requests"] += 100
    assert [answer.status_code for answer in answers] == [200] * 100
    created = [answer.json() for answer in answers]
    assert len({key["key_id"] for key in created}) == 100
    assert len({key["api_key"] for key in created}) == 100
    assert len({key["api_key"][:12] for key in created}) > 90  # random, not sequential
    after = {key["key_id"] for key in requests.get(server.url("/api/keys"), timeout=20).json()["keys"]}
    assert after - before == {key["key_id"] for key in created}

    def use(key):
        return requests.get(server.url("/api/usage"), headers={"X-API-Key": key["api_key"]}, timeout=60)

    with ThreadPoolExecutor(max_workers=50) as pool:
        uses = list(pool.map(use, created))
    assert [answer.status_code for answer in uses] == [200] * 100
    assert [answer.json()["key_id"] for answer in uses] == [key["key_id"] for key in created]
    rows = query_database(server, "SELECT COUNT(*) FROM api_auth_keys WHERE name LIKE 'burst %'")
    assert rows[0][0] == 100


def test_one_hundred_parallel_deletes_of_one_key_succeed_exactly_once(server):
    doomed = server.create_key("doomed")
    barrier = threading.Barrier(100)

    def delete(_):
        barrier.wait()
        return requests.delete(server.url(f"/api/keys/{doomed['key_id']}"), timeout=60)

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(delete, range(100)))
    COUNT["requests"] += 100
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 1, 404: 99}, statuses
    for answer in answers:
        assert answer.json()["error_code" if answer.status_code == 404 else "key_id"]
    refused(send(server, "GET", "/api/usage", [("X-API-Key", doomed["api_key"])]), 401, "INVALID_KEY")
    audit = requests.get(server.url("/api/audit?limit=1000"), timeout=20).json()["events"]
    assert sum(1 for event in audit if event["action"] == "key_delete" and event["target"] == doomed["key_id"]) == 1


# ---- the count -----------------------------------------------------------------------------------------

def test_victim_survived_and_hostile_count_is_reported(server, victim, capsys):
    after = requests.get(server.url(f"/api/keys/{victim['key_id']}"), timeout=10).json()
    assert (after["name"], after["rate_limit"], after["metadata"], after["is_active"]) == ("victim", 7, {"keep": True}, True)
    alive(server)
    with capsys.disabled():
        print(f"\nhostile input: {COUNT['cases']} cases, {COUNT['requests']} hostile requests; "
              f"none answered with a 5xx or a traceback")
    assert COUNT["requests"] >= 500
