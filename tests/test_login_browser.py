"""Sign-in in a real headless Chromium, require mode, on the ComfyUI stand-in:
redirect to /login, wrong then right password, the UI loads with its
settings and WebSocket and no reload loop, sign-out ends the session."""

import os

import pytest

from conftest import REPO

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(REPO, "tests", "artifacts")
PASSWORD = "correct horse battery staple"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is required in CI (.ci/run installs it)")
        pytest.skip("no /usr/bin/chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def shot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, name))


def test_sign_in_with_password_then_the_ui_works_without_a_reload_loop(browser, make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    context = browser.new_context(viewport={"width": 1100, "height": 700}, color_scheme="dark")
    page = context.new_page()
    page.goto(host.base + "/")
    assert page.url == host.base + "/login?next=/"
    shot(page, "login-page.png")

    page.fill("#secret", "wrong password")
    page.click("#submit")
    page.wait_for_selector("#message:has-text('wrong password or API key')")

    navigations, sockets, statuses = [], [], {}
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.on("response", lambda response: statuses.setdefault(response.url.split("?")[0], response.status))
    page.fill("#secret", PASSWORD)
    page.click("#submit")
    page.wait_for_url(host.base + "/")
    page.wait_for_timeout(2500)  # a reload loop would show up as more navigations
    shot(page, "after-sign-in.png")
    assert navigations == [host.base + "/"], navigations
    assert statuses.get(host.base + "/api/settings") == 200
    assert any("/ws" in url for url in sockets), sockets
    assert not [url for url, status in statuses.items() if status in (401, 403)], statuses

    cookie = [c for c in context.cookies() if c["name"] == "comfyui_api_auth"][0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("comfyui_api_auth") == -1  # not readable by scripts

    # Signing out ends the session's socket at once, and the page then goes to the
    # sign-in page by itself: sign out beside the page (its cookie, its origin) and wait.
    signed_out = context.request.post(host.base + "/api/auth/logout", headers={"Origin": host.base})
    assert signed_out.status == 200
    page.wait_for_url(host.base + "/login?next=%2F")
    page.goto(host.base + "/")
    assert page.url.startswith(host.base + "/login")
    context.close()


def test_sign_in_with_an_api_key_and_next_is_kept_on_this_server(browser, make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    import requests
    admin = requests.Session()
    admin.post(host.url("/api/auth/login"), json={"password": PASSWORD})
    key = admin.post(host.url("/api/keys"), json={"name": "browser key", "rate_limit": 10000}).json()

    context = browser.new_context()
    page = context.new_page()
    page.goto(host.base + "/login?next=//evil.example/")
    page.click("#tab-key")
    page.fill("#secret", key["api_key"])
    page.click("#submit")
    page.wait_for_url(host.base + "/")  # an off-site "next" is ignored
    status = page.evaluate("fetch('/api/auth/status').then(r => r.json())")
    assert status["principal"]["kind"] == "key" and status["principal"]["key_id"] == key["key_id"]
    assert page.evaluate("fetch('/api/keys').then(r => r.status)") == 403
    context.close()


def test_a_page_whose_key_is_deleted_or_session_ended_elsewhere_goes_to_sign_in(browser, make_host):
    """The server closes the page's WebSocket after an "api_auth_revoked" message; the
    package's listener sends the person to /login instead of reconnecting into 401s."""
    import re

    import requests
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    admin = requests.Session()
    admin.post(host.url("/api/auth/login"), json={"password": PASSWORD})
    key = admin.post(host.url("/api/keys"), json={"name": "laptop", "rate_limit": 10000}).json()

    def signed_in_page(secret_tab, secret):
        context = browser.new_context()
        page = context.new_page()
        page.goto(host.base + "/login?next=/")
        if secret_tab:
            page.click(secret_tab)
        page.fill("#secret", secret)
        with page.expect_websocket(predicate=lambda socket: "/ws" in socket.url):
            page.click("#submit")
        page.wait_for_selector("body[data-comfy-ready=true]")
        cookie = [c for c in context.cookies() if c["name"] == "comfyui_api_auth"][0]["value"]
        return context, page, cookie

    # A. an admin deletes the key a remote person signed in with
    context, page, _ = signed_in_page("#tab-key", key["api_key"])
    assert admin.delete(host.url(f"/api/keys/{key['key_id']}")).status_code == 200
    page.wait_for_url(re.compile(re.escape(host.base) + r"/login\?next=%2F$"), timeout=10000)
    context.close()

    # B. the session is signed out from elsewhere (another tab, another program)
    context, page, cookie = signed_in_page(None, PASSWORD)
    assert requests.post(host.url("/api/auth/logout"), cookies={"comfyui_api_auth": cookie}).status_code == 200
    page.wait_for_url(re.compile(re.escape(host.base) + r"/login\?next=%2F$"), timeout=10000)
    context.close()


def test_setup_code_tab_sets_the_first_admin_password(browser, make_host):
    import re
    import requests
    host = make_host(env={"COMFYUI_API_AUTH": "require"})  # a fresh locked server: no admin yet
    code = re.findall(r"setup code ([0-9A-Z-]{19})", host.log())[-1]
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = context.new_page()
    page.goto(host.base + "/")
    assert page.url == host.base + "/login?next=/"
    page.locator("#tab-setup").wait_for()  # shown while a setup code waits
    page.click("#tab-setup")
    page.fill("#code", "AAAA-AAAA-AAAA-AAAA")
    page.fill("#secret", PASSWORD)
    page.click("#submit")
    page.wait_for_selector("#message:has-text('wrong setup code')")
    shot(page, "login-setup-code.png")
    page.fill("#code", code)
    page.click("#submit")
    page.wait_for_url(host.base + "/")
    status = page.evaluate("fetch('/api/auth/status').then(r => r.json())")
    assert status["is_admin"] is True and status["setup_available"] is False
    assert requests.post(host.url("/api/auth/login"), json={"password": PASSWORD}, timeout=10).status_code == 200
    page.goto(host.base + "/login")
    page.wait_for_timeout(500)
    assert page.locator("#tab-setup").is_hidden()  # spent: the tab is gone
    context.close()


HOSTILE_NEXT = ["/\t/attacker.example/", "/\n/evil.example/", "//evil.example/", "/\\evil.example/",
                "/\\\\evil.example/", "https://evil.example/", "javascript:alert(1)", "/%2F%2Fevil.example/",
                "/.//evil.example/", "/\t\\evil.example/", " //evil.example/", "http:evil.example"]


def test_next_never_leaves_this_origin_after_the_browser_normalises_it(browser, make_host):
    """Browsers drop tabs and newlines from URLs and read "\\" as "/": a check on
    the raw string is not enough. Every hostile ``next`` lands on this server."""
    from urllib.parse import quote

    import requests
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    admin = requests.Session()
    admin.post(host.url("/api/auth/login"), json={"password": PASSWORD})
    key = admin.post(host.url("/api/keys"), json={"name": "next key", "rate_limit": 10000}).json()

    def land(next_value):
        context = browser.new_context()
        off_site = []

        def elsewhere(route):
            off_site.append(route.request.url)
            route.fulfill(status=200, content_type="text/html", body="<h1>attacker</h1>")
        context.route(lambda url: not url.startswith(host.base + "/"), elsewhere)
        page = context.new_page()
        page.goto(host.base + "/login?next=" + quote(next_value, safe=""))
        page.click("#tab-key")
        page.fill("#secret", key["api_key"])
        # The navigation the page starts after signing in (whether or not the
        # target then loads: the stand-in answers unknown paths oddly).
        with page.expect_request(lambda request: request.is_navigation_request()) as navigation:
            page.click("#submit")
        landed = navigation.value.url
        context.close()
        return landed, off_site

    for hostile in HOSTILE_NEXT:
        landed, off_site = land(hostile)
        assert landed.startswith(host.base + "/") and not off_site, (hostile, landed, off_site)
    assert land("/some/path?x=1") == (host.base + "/some/path?x=1", [])
