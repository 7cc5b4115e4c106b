"""A person with a plain key uses the ComfyUI page, in a real headless
Chromium on the ComfyUI stand-in's front end, require mode: the page's own
files are not API requests, so a key with the default limit (100 an hour)
signs in, loads the page, sees its usage and runs a workflow; the limit still
holds for the page's API calls; the sign-in page looks like ComfyUI.
Screenshots go to tests/artifacts/ (gitignored)."""

import base64
import os
import time
from urllib.parse import urlsplit

import pytest
import requests

from browser_support import ARTIFACTS, launch_chromium, screenshot
from conftest import REPO, requests_this_hour

pytestmark = pytest.mark.browser

PASSWORD = "ui key holder password"
FOLDER = os.path.basename(REPO)

# What one load of the stand-in's page asks the server for. ComfyUI's own
# front end makes about 16 API calls and 472 requests for its files; the
# stand-in makes 11 API calls and a dozen file requests.
PAGE_API_CALLS = sorted([
    "WS /ws", "GET /api/users", "GET /api/settings", "GET /api/i18n", "GET /api/system_stats",
    "GET /api/extensions", "GET /api/object_info", "GET /api/userdata", "GET /api/queue",
    "GET /api/history", "GET /api/workflow_templates"])
PANEL_API_CALLS = sorted(["GET /api/auth/status", "GET /api/usage"])  # the panel's own-usage card
WORKFLOW_API_CALLS = sorted(["POST /api/prompt", "GET /api/view"])    # queue it, show the saved image
# The package's files: every module under web/ (ComfyUI imports each one) and the style sheet.
PACKAGE_FILES = {f"/extensions/{FOLDER}/{name}" for name in os.listdir(os.path.join(REPO, "web")) if name.endswith(".js")}
PAGE_FILES = {"/", "/scripts/app.js", "/scripts/api.js", "/assets/index.css", "/assets/images/comfy-logo-single.svg",
              "/templates/index.json", f"/extensions/{FOLDER}/api-keys.css"} | PACKAGE_FILES

# A workflow that needs no model, in ComfyUI's API format.
BLUR = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x3366CC}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 2, "sigma": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "ui_blur"}}}


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as launched:
        yield launched


@pytest.fixture
def locked(make_host):
    return make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})


def admin_session(host):
    session = requests.Session()
    assert session.post(host.url("/api/auth/login"), json={"password": PASSWORD}, timeout=10).status_code == 200
    return session


def screenshot_path(name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    return os.path.join(ARTIFACTS, name)


def is_api(path):
    return path.startswith(("/api/", "/internal/")) or path == "/ws"


class Traffic:
    """Every request the page makes, with its answer: (method, path, status)."""

    def __init__(self, page, host):
        self.host = host
        self.answers = []
        self.sockets = []
        page.on("response", lambda response: self.answers.append(
            (response.request.method, urlsplit(response.url).path, response.status)))
        page.on("websocket", lambda socket: self.sockets.append(urlsplit(socket.url).path))

    def api_calls(self):
        calls = [f"{method} {path}" for method, path, _ in self.answers
                 if is_api(path) and path != "/api/auth/login"]  # the sign-in, charged or not, is counted apart
        return sorted(calls + [f"WS {path}" for path in self.sockets])

    def files(self):
        return [(path, status) for method, path, status in self.answers if not is_api(path) and path != "/login"]

    def settled_api_calls(self, page, expected, seconds=5):
        """The API calls once every expected one has been seen (Playwright hands
        response events over while the test waits, not at once), or after
        ``seconds``: a call that never came still shows as missing."""
        deadline = time.time() + seconds
        while not set(expected) <= set(self.api_calls()) and time.time() < deadline:
            page.wait_for_timeout(50)
        return self.api_calls()

    def refused(self):
        return [(method, path, status) for method, path, status in self.answers if status in (401, 403, 429)]


def sign_in_with_key(page, host, admin, key, traffic):
    """Sign in on /login as a person does; return what the key had been charged
    when the page started to load (1 where a key sign-in is charged, else 0).
    ``traffic`` then holds the sign-in and what followed it."""
    held = {}

    def count_then_load(route):
        held["charged"] = requests_this_hour(admin, host, key)
        route.continue_()

    page.route(host.base + "/", count_then_load)
    # the sign-in page asks for the status itself: its answer must not land after the clear below
    with page.expect_response(lambda response: urlsplit(response.url).path == "/api/auth/status"):
        page.goto(host.base + "/")
    assert page.url == host.base + "/login?next=/"
    traffic.answers.clear()
    page.click("#tab-key")
    page.fill("#secret", key["api_key"])
    page.click("#submit")
    page.wait_for_url(host.base + "/")
    page.unroute(host.base + "/")
    return held["charged"]


def test_a_key_with_the_default_limit_uses_the_comfyui_page(browser, locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "laptop"}, timeout=10).json()
    assert key["rate_limit"] == 100  # the default limit
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    traffic = Traffic(page, locked)

    before = sign_in_with_key(page, locked, admin, key, traffic)
    assert before in (0, 1)
    page.wait_for_selector("body[data-comfy-ready=true]")
    page.wait_for_function("[...document.styleSheets].some(s => (s.href || '').endsWith('api-keys.css'))")
    # What the browser reports is a cross-check (Playwright has, now and then,
    # not reported the page's first call, /api/users); the server's own count
    # below is the measure: exactly these calls were charged.
    assert set(traffic.settled_api_calls(page, PAGE_API_CALLS)) <= set(PAGE_API_CALLS), traffic.api_calls()
    assert {path for path, _ in traffic.files()} == PAGE_FILES
    assert all(status in (200, 304) for _, status in traffic.files()), traffic.files()
    assert not traffic.refused(), traffic.refused()
    # only the page's API calls were charged; its files were not
    assert requests_this_hour(admin, locked, key) == before + len(PAGE_API_CALLS)
    stats = admin.get(locked.url(f"/api/keys/{key['key_id']}"), timeout=10).json()["usage_stats"]
    counted = {f"{e['method']} /api{e['route']}" for e in stats["endpoints"]}
    assert counted == set(PAGE_API_CALLS) - {"WS /ws"}, counted  # (the WebSocket is counted when it closes)

    # the panel's own-usage card
    page.locator(".comfyui-api-auth-tab-button").click()
    own = page.get_by_test_id("own-usage")
    own.get_by_test_id("usage").wait_for()
    assert "laptop" in own.inner_text()
    shown = before + len(PAGE_API_CALLS) + len(PANEL_API_CALLS)
    assert f"{shown} / 100 this hour" in own.inner_text(), own.inner_text()
    assert "1 page load" in own.get_by_test_id("page-loads").inner_text()
    endpoints = own.locator(".cak-endpoints li").all_inner_texts()
    assert endpoints and not [e for e in endpoints if "(static)" in e or "/extensions/" in e or ".js" in e], endpoints

    # a workflow that needs no model, queued from the page with its Run button
    page.evaluate("workflow => app.loadApiJson(workflow, 'blur.json')", BLUR)
    page.get_by_test_id("queue-button").click()
    image = page.get_by_test_id("outputs").locator("img")
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth === 64",
                           arg=image.element_handle(), timeout=15000)
    history = admin.get(locked.url("/api/history"), timeout=10).json()
    assert [item["status"]["status_str"] for item in history.values()] == ["success"]
    assert list(history.values())[0]["outputs"]["3"]["images"][0]["filename"].startswith("ui_blur")
    screenshot(page, "ui-key-holder-panel.png")

    # Afterwards the key has been charged the page's API calls and nothing
    # else: 11 on load, 2 for the usage card, 2 for the workflow = 15 (16 where
    # the sign-in is charged too) of its 100 an hour; the page's files, none.
    everything = sorted(PAGE_API_CALLS + PANEL_API_CALLS + WORKFLOW_API_CALLS)
    assert set(traffic.settled_api_calls(page, everything)) <= set(everything), traffic.api_calls()
    assert len(everything) == 15
    body = admin.get(locked.url(f"/api/keys/{key['key_id']}"), timeout=10).json()
    assert body["requests_this_hour"] == before + 15
    stats = body["usage_stats"]  # (the WebSocket is counted when it closes)
    assert stats["total_requests"] <= body["requests_this_hour"]
    assert not [e for e in stats["endpoints"] if e["route"] == "(static)" or e["route"].startswith("/extensions/")]
    assert stats["page_loads"] == 1 and stats["page_files"] >= len(PAGE_FILES) - 1
    assert not traffic.refused(), traffic.refused()
    assert not errors, errors
    context.close()


def test_the_limit_still_holds_for_api_calls_from_the_page(browser, locked):
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "tight", "rate_limit": 5}, timeout=10).json()
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = context.new_page()
    traffic = Traffic(page, locked)

    before = sign_in_with_key(page, locked, admin, key, traffic)
    # The page's first API calls spend what is left of the 5; the rest are refused.
    page.wait_for_function("() => document.querySelector('[data-testid=queue-button]')")
    page.wait_for_timeout(1500)
    assert requests_this_hour(admin, locked, key) == 5
    api = [(path, status) for method, path, status in traffic.answers if is_api(path) and path != "/api/auth/login"]
    assert [status for _, status in api].count(429) >= 1, api
    assert all(status in (200, 404, 429) for _, status in api), api
    files = traffic.files()
    assert files and all(status == 200 for _, status in files), files

    # once five requests have been charged, the page's next API call gets 429 ...
    answer = page.evaluate("""async () => {
        const res = await app.api.fetchApi('/system_stats');
        return {status: res.status, body: await res.json(), retry: res.headers.get('Retry-After')};
    }""")
    assert answer["status"] == 429 and answer["body"]["error_code"] == "RATE_LIMIT_EXCEEDED"
    assert answer["body"]["limit"] == 5 and int(answer["retry"]) > 0
    # ... while the page's static files keep loading, and a miss is refused too
    statuses = page.evaluate("""async (folder) => Object.fromEntries(await Promise.all([
        '/scripts/app.js', '/assets/index.css', '/assets/images/comfy-logo-single.svg', '/templates/index.json',
        `/extensions/${folder}/api-keys.js`, `/extensions/${folder}/api-keys.css`, '/no-such-file.js',
    ].map(async (path) => [path, (await fetch(path, {cache: 'no-store'})).status])))""", FOLDER)
    assert statuses.pop("/no-such-file.js") == 429
    assert set(statuses.values()) == {200}, statuses

    # a reload: every file loads again, every API call is refused
    traffic.answers.clear()
    page.reload()
    page.wait_for_function("() => document.querySelector('[data-testid=queue-button]')")
    page.wait_for_timeout(1000)
    reloaded = traffic.files()
    assert {"/", "/scripts/app.js", "/scripts/api.js", "/assets/index.css"} <= {path for path, _ in reloaded}
    assert all(status in (200, 304) for _, status in reloaded), reloaded
    api = [(path, status) for method, path, status in traffic.answers if is_api(path)]
    assert api and all(status == 429 for _, status in api), api
    assert requests_this_hour(admin, locked, key) == 5
    assert before in (0, 1)
    context.close()


LOGIN_LOOK = """() => {
    const style = (selector) => getComputedStyle(document.querySelector(selector));
    const body = style('body'), main = style('main'), title = style('h1'), input = style('#secret');
    const button = style('button.primary');
    return {
        colorScheme: getComputedStyle(document.documentElement).colorScheme,
        background: body.backgroundColor, text: body.color, font: body.fontFamily,
        size: body.fontSize, lineHeight: body.lineHeight,
        card: main.backgroundColor, cardBorder: main.borderTopColor, cardRadius: main.borderTopLeftRadius,
        input: input.backgroundColor, inputText: input.color, inputRadius: input.borderTopLeftRadius,
        inputPadding: input.padding, buttonHeight: button.minHeight, buttonRadius: button.borderTopLeftRadius,
        title: document.querySelector('h1').textContent.trim(), titleSize: title.fontSize,
        titleWeight: title.fontWeight, mark: !!document.querySelector('h1 svg'),
    };
}"""

PANEL_LOOK = """() => {
    const style = (selector) => getComputedStyle(document.querySelector(selector));
    const root = style('.cak-root'), title = style('.cak-title'), card = style('.cak-card'), button = style('.cak-btn');
    return {size: root.fontSize, lineHeight: root.lineHeight, titleSize: title.fontSize, titleWeight: title.fontWeight,
            cardRadius: card.borderTopLeftRadius, buttonHeight: button.minHeight, buttonRadius: button.borderTopLeftRadius};
}"""


def test_the_sign_in_page_looks_like_comfyui(browser, locked):
    looks, shots = {}, {}
    for scheme in ("dark", "light"):
        context = browser.new_context(viewport={"width": 560, "height": 720}, color_scheme=scheme)
        page = context.new_page()
        page.goto(locked.base + "/login?next=/")
        looks[scheme] = page.evaluate(LOGIN_LOOK)
        page.click("#tab-key")
        shots[scheme] = page.screenshot(path=screenshot_path(f"login-page-{scheme}-system.png"))
        if scheme == "dark":
            context.close()
    # dark whatever the system's colour scheme, as ComfyUI is by default
    assert looks["light"] == looks["dark"]
    look = looks["light"]
    assert look["colorScheme"] == "dark"
    assert look["background"] == "rgb(32, 32, 32)"           # ComfyUI's --bg-color (dark)
    assert look["card"] == "rgb(53, 53, 53)"                  # --comfy-menu-bg
    assert look["cardBorder"] == "rgb(78, 78, 78)"            # --border-color
    assert look["input"] == "rgb(34, 34, 34)"                 # --comfy-input-bg
    assert look["inputText"] == look["text"] == "rgb(221, 221, 221)"  # --input-text
    # the ComfyUI name and mark, ComfyUI's font
    assert look["title"] == "ComfyUI" and look["mark"]
    assert look["font"].startswith("Arial")
    assert look["inputPadding"] == "5px 8px"  # the panel's inputs (.cak-input)

    # the panel of the same key holder, in the same browser: the same type and spacing
    admin = admin_session(locked)
    key = admin.post(locked.url("/api/keys"), json={"name": "side by side"}, timeout=10).json()
    page.fill("#secret", key["api_key"])
    page.click("#submit")
    page.wait_for_url(locked.base + "/")
    page.wait_for_selector("body[data-comfy-ready=true]")
    page.locator(".comfyui-api-auth-tab-button").click()
    page.get_by_test_id("own-usage").get_by_test_id("usage").wait_for()
    panel = page.evaluate(PANEL_LOOK)
    assert {name: look[name] for name in panel} == panel
    assert panel["size"] == "13px" and panel["titleSize"] == "15px" and panel["cardRadius"] == "8px"

    # tests/artifacts/login-beside-panel.png: the two side by side
    pair = page.context.new_page()
    pair.set_viewport_size({"width": 1140, "height": 740})
    images = "".join(f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                     for png in (shots["light"], page.screenshot()))
    pair.set_content(f'<body style="margin:0;padding:10px;background:#111;display:flex;gap:10px">{images}</body>')
    screenshot(pair, "login-beside-panel.png")
    page.context.close()
