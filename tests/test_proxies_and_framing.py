"""Forwarding headers believed only from trusted proxies
(COMFYUI_API_AUTH_TRUSTED_PROXIES), and pages no other site may frame
(COMFYUI_API_AUTH_ALLOW_FRAMING), over real HTTP."""

import requests

PASSWORD = "a fine admin password"
COOKIE = "comfyui_api_auth"


def sign_in(host, password=PASSWORD, **headers):
    return requests.post(host.url("/api/auth/login"), json={"password": password}, headers=headers, timeout=10)


def audit_clients(host, cookie, action):
    events = requests.get(host.url("/api/audit"), headers={"Cookie": f"{COOKIE}={cookie}"}, timeout=10)
    assert events.status_code == 200, events.text
    return [event["client"] for event in events.json()["events"] if event["action"] == action]


# ---- trusted proxies --------------------------------------------------------------------------

def test_spoofed_forwarding_headers_from_an_untrusted_peer_are_ignored(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD, "COMFYUI_API_AUTH_LOGIN_ATTEMPTS": "2"})
    signed = sign_in(host, **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.1"})
    assert signed.status_code == 200
    assert "secure" not in signed.headers["Set-Cookie"].lower()  # plain HTTP: a Secure cookie would not come back
    cookie = signed.cookies[COOKIE]
    for spoofed in ("198.51.100.1", "198.51.100.2"):
        assert sign_in(host, "wrong password", **{"X-Forwarded-For": spoofed}).status_code == 401
    # a fresh X-Forwarded-For per attempt does not buy more guesses: the throttle keys on the peer
    blocked = sign_in(host, "wrong password", **{"X-Forwarded-For": "198.51.100.3"})
    assert blocked.status_code == 429
    assert audit_clients(host, cookie, "sign_in_failed") == ["127.0.0.1", "127.0.0.1"]


def test_a_trusted_proxy_is_believed_for_the_client_address_and_https(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD, "COMFYUI_API_AUTH_LOGIN_ATTEMPTS": "2",
                          "COMFYUI_API_AUTH_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
    signed = sign_in(host, **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"})
    assert signed.status_code == 200
    assert "secure" in signed.headers["Set-Cookie"].lower()
    cookie = signed.cookies[COOKIE]
    assert "secure" not in sign_in(host, **{"X-Forwarded-Proto": "http"}).headers["Set-Cookie"].lower()

    for _ in range(2):
        assert sign_in(host, "wrong password", **{"X-Forwarded-For": "198.51.100.1"}).status_code == 401
    assert sign_in(host, "wrong password", **{"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    # what the client wrote left of the proxy's entry proves nothing: still 198.51.100.1
    assert sign_in(host, PASSWORD, **{"X-Forwarded-For": "203.0.113.50, 198.51.100.1"}).status_code == 429
    assert sign_in(host, PASSWORD, **{"X-Forwarded-For": "198.51.100.1, 10.0.0.3"}).status_code == 429
    # another client behind the same proxy is throttled separately
    assert sign_in(host, "wrong password", **{"X-Forwarded-For": "198.51.100.2"}).status_code == 401
    assert sign_in(host, PASSWORD, **{"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    assert audit_clients(host, cookie, "sign_in_failed") == ["198.51.100.2", "198.51.100.1", "198.51.100.1"]


def test_a_request_from_a_trusted_proxy_is_never_trusted_local(make_host):
    # nginx's default proxy_pass sends no X-Forwarded-For: the proxy's own loopback request is not the admin
    host = make_host(env={"COMFYUI_API_AUTH_TRUST_LOCALHOST": "on", "COMFYUI_API_AUTH_TRUSTED_PROXIES": "127.0.0.1"})
    assert host.get("/api/keys").status_code == 401
    assert host.post("/api/keys", json={"name": "x", "scopes": ["admin"]}).status_code == 401
    assert host.get("/api/auth/status").json()["is_admin"] is False


def test_a_bad_trusted_proxies_value_closes_the_server(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_TRUSTED_PROXIES": "10.0.0.1/8"})
    for path in ("/api/auth/status", "/api/keys", "/system_stats"):
        assert host.get(path).status_code == 503
    assert "COMFYUI_API_AUTH_TRUSTED_PROXIES" in host.log()


# ---- framing --------------------------------------------------------------------------------------

PAGES = ["/", "/index.html", "/login", "/api/login"]


def assert_unframeable(response):
    assert response.headers.get("X-Frame-Options") == "DENY", (response.url, dict(response.headers))
    assert "frame-ancestors 'none'" in response.headers.get("Content-Security-Policy", ""), response.url


def test_pages_cannot_be_framed(host):
    key = host.create_key("page viewer")
    for path in PAGES:
        for headers in ({}, {"Authorization": f"Bearer {key['api_key']}"}, {"X-API-Key": key["api_key"]}):
            response = host.get(path, headers=headers)
            assert response.status_code == 200 and "text/html" in response.headers["Content-Type"], path
            assert_unframeable(response)
        assert_unframeable(requests.head(host.url(path), timeout=10))
    # JSON routes are not pages: their path stays as it was
    for path in ("/api/system_stats", "/api/features"):
        assert "X-Frame-Options" not in host.get(path, headers={"Authorization": f"Bearer {key['api_key']}"}).headers


def test_pages_cannot_be_framed_in_require_mode_either(make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    cookie = sign_in(host).cookies[COOKIE]
    assert_unframeable(host.get("/login"))
    assert_unframeable(host.get("/", headers={"Cookie": f"{COOKIE}={cookie}"}))


def test_framing_can_be_allowed_on_purpose(make_host):
    host = make_host(env={"COMFYUI_API_AUTH_ALLOW_FRAMING": "on"})
    for path in PAGES:
        response = host.get(path)
        assert response.status_code == 200
        assert "X-Frame-Options" not in response.headers and "Content-Security-Policy" not in response.headers
