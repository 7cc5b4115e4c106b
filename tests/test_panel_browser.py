"""The "API Keys" sidebar panel in headless Chromium, on the ComfyUI stand-in
(tests/comfyui_host) with this repository installed as a custom node.

Every flow goes through the real host page, the real extension loader and the
real HTTP API: create a key and see it once, use it, edit, disable, enable,
delete; workflows queued with a key and their limits; the activity (audit
trail); server errors as toasts; a key holder's own view in require mode; the
"how to become admin" view in enable mode; 320 px width; themes; keyboard.
Screenshots go to tests/artifacts/ (gitignored).
"""

import datetime
import json
import os
import re
import time

import pytest
import requests

from browser_support import launch_chromium, screenshot
from conftest import REPO, package_module

pytestmark = pytest.mark.browser

PASSWORD = "panel test password 1"
FOLDER = os.path.basename(REPO)  # the name ComfyUI serves the package under

# ComfyUI's own palettes (comfy_base of the "dark" and "light" colour palettes).
DARK = {"--fg-color": "#fff", "--bg-color": "#202020", "--comfy-menu-bg": "#353535",
        "--comfy-input-bg": "#222", "--input-text": "#ddd", "--descrip-text": "#999",
        "--border-color": "#4e4e4e", "--error-text": "#ff4444"}
LIGHT = {"--fg-color": "#222", "--bg-color": "#DDD", "--comfy-menu-bg": "#F5F5F5",
         "--comfy-input-bg": "#C9C9C9", "--input-text": "#222", "--descrip-text": "#444",
         "--border-color": "#888", "--error-text": "#F44336", "--p-primary-color": "#2563eb"}


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as launched:
        yield launched


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1100, "height": 800})
    yield ctx
    ctx.close()


def watch(page):
    """Collect page errors and the API requests the page makes."""
    seen = {"errors": [], "requests": []}
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    page.on("request", lambda request: seen["requests"].append((request.method, request.url)))
    return seen


def api_calls(seen, pattern):
    return [(method, url) for method, url in seen["requests"] if re.search(pattern, url)]


def open_panel(page, host, path="/"):
    page.goto(host.base + path)
    page.wait_for_selector("body[data-comfy-ready=true]")
    tab = page.locator(".comfyui-api-auth-tab-button")
    assert tab.get_attribute("aria-label") == "API Keys"
    assert "pi-key" in tab.locator("i").get_attribute("class")
    tab.click()
    panel = page.get_by_test_id("api-keys-panel")
    panel.wait_for()
    page.wait_for_selector("[data-testid=principal]")
    return panel


def toast(page, severity, text):
    """Wait for a toast of `severity` that contains `text`."""
    locator = page.locator(f".p-toast-message-{severity}", has_text=text)
    locator.first.wait_for(timeout=10000)
    return locator.first


def row(page, name):
    return page.locator(".cak-row", has=page.locator(".cak-name-text", has_text=re.compile(f"^{re.escape(name)}$")))


def no_dialog(page):
    page.wait_for_function("!document.querySelector('dialog')")


def secret_is_gone(page, secret):
    return page.evaluate("""secret => !document.documentElement.outerHTML.includes(secret)
        && ![...document.querySelectorAll('input, textarea')].some(i => i.value.includes(secret))""", secret)


def heap_holds(page, needle):
    """Whether the page's JavaScript heap still holds `needle` (after garbage collection)."""
    cdp = page.context.new_cdp_session(page)
    chunks = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))
    cdp.send("HeapProfiler.enable")
    for _ in range(3):
        cdp.send("HeapProfiler.collectGarbage")
    cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    cdp.detach()
    return needle in "".join(chunks)


def use_key(host, key, times=1, path="/api/usage"):
    return [requests.get(host.url(path), headers={"X-API-Key": key}, timeout=10).status_code for _ in range(times)]


# Workflows for the stand-in's queue: one that completes, one whose node raises.
COMPLETES = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
             "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "t"}}}
FAILS = {"1": {"class_type": "FailNode", "inputs": {"message": "boom"}},
         "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "f"}}}


def queue_prompt(host, key, workflow):
    response = requests.post(host.url("/prompt"), json={"prompt": workflow}, headers={"X-API-Key": key}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["prompt_id"]


def wait_for_jobs(host, path, done, headers=None, timeout=30):
    """usage_stats.jobs from `path` once `done(jobs)` holds (the server polls the queue once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(host.url(path), headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        jobs = response.json()["usage_stats"]["jobs"]
        if done(jobs):
            return jobs
        assert time.monotonic() < deadline, f"jobs never settled: {jobs}"
        time.sleep(0.25)


def workflow_numbers(section):
    """{stat: shown value} of a Workflows section."""
    return section.evaluate("""s => Object.fromEntries([...s.querySelectorAll('[data-stat]')]
        .map(e => [e.dataset.stat, e.querySelector('dd').textContent]))""")


def narrow_sidebar(page):
    """The stand-in's sidebar is 360 px wide; ComfyUI's can be made narrower."""
    page.add_style_tag(content=".sidebar-panel { width: 320px !important; }")


def overflow(page):
    """What sticks out of a (narrowed) sidebar, and the scroll sizes of the panel."""
    return page.evaluate("""() => {
        const panel = document.querySelector('.sidebar-panel');
        const root = document.querySelector('.cak-root');
        const right = panel.getBoundingClientRect().right;
        const outside = [...root.querySelectorAll('*')]
            .filter(e => e.getClientRects().length && e.getBoundingClientRect().right > right + 0.5)
            .map(e => e.className || e.tagName);
        return {panelWidth: panel.clientWidth, root: [root.scrollWidth, root.clientWidth],
                panel: [panel.scrollWidth, panel.clientWidth], outside};
    }""")


def assert_fits(page):
    result = overflow(page)
    assert result["panelWidth"] <= 320
    assert result["root"][0] <= result["root"][1], result
    assert result["panel"][0] <= result["panel"][1], result
    assert not result["outside"], result


def set_theme(page, variables, light):
    css = ":root {" + "".join(f"{name}: {value};" for name, value in variables.items()) + "}"
    # The stand-in page hard-codes a dark look; follow the palette like ComfyUI does.
    css += ("body { background: var(--bg-color) !important; color: var(--fg-color) !important; }"
            ".sidebar-panel { background: var(--comfy-menu-bg) !important; }"
            ".side-tool-bar-container { background: var(--comfy-input-bg) !important; }")
    page.evaluate("""([css, light]) => {
        let style = document.getElementById('test-theme');
        if (!style) { style = document.createElement('style'); style.id = 'test-theme'; document.head.append(style); }
        style.textContent = css;
        document.documentElement.classList.toggle('light-theme', light);
    }""", [css, light])


# ---- the whole life of a key, as an admin on the machine ComfyUI runs on ----------------

def test_key_lifecycle_through_the_panel(context, host):
    busy = host.create_key("nightly batch", rate_limit=50, metadata={"team": "vfx"})
    host.create_key("render farm (admin)", rate_limit=5000, scopes=["admin"])
    assert use_key(host, busy["api_key"], 6) == [200] * 6
    assert use_key(host, busy["api_key"], 2, "/api/usage?days=0") == [400, 400]  # failures count too

    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=host.base)
    page = context.new_page()
    seen = watch(page)
    open_panel(page, host)
    assert "Admin" in page.get_by_test_id("principal").inner_text()
    page.get_by_test_id("key-count").filter(has_text="2 keys").wait_for()
    assert "8 / 50 this hour" in row(page, "nightly batch").inner_text()

    # create
    page.get_by_role("button", name="New key").click()
    dialog = page.get_by_role("dialog", name="New API key")
    dialog.get_by_label("Name", exact=True).fill("CI render bot")
    dialog.get_by_label("Rate limit (requests per hour)").fill("250")
    dialog.get_by_label("Metadata key 1").fill("team")
    dialog.get_by_label("Metadata value 1").fill("render")
    dialog.get_by_role("button", name="Add field").click()
    dialog.get_by_label("Metadata key 2").fill("env")
    dialog.get_by_label("Metadata value 2").fill("ci")
    dialog.get_by_role("button", name="Create key").click()

    shown = page.get_by_role("dialog", name="Key created: CI render bot")
    shown.wait_for()
    assert "it will not be shown again" in shown.inner_text()
    secret = shown.get_by_test_id("new-key").input_value()
    assert re.fullmatch(r"comfy_[0-9A-Za-z]{46}", secret), secret
    # shown as an input's value (a property), never as markup
    assert secret not in page.evaluate("document.documentElement.outerHTML")
    shown.get_by_role("button", name="Copy").click()
    toast(page, "success", "clipboard")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == secret
    screenshot(page, "panel-created-key-dialog.png")

    assert requests.get(host.url("/api/usage"), headers={"X-API-Key": copied}, timeout=10).status_code == 200

    page.keyboard.press("Escape")  # Escape closes the dialog
    shown.wait_for(state="detached")
    no_dialog(page)
    assert secret_is_gone(page, secret)
    page.evaluate("navigator.clipboard.writeText('')")
    copied = None
    assert not heap_holds(page, secret), "the new key is still referenced in the page's memory"

    listed = row(page, "CI render bot")
    listed.wait_for()
    assert "0 / 250 this hour" in listed.inner_text() or "1 / 250 this hour" in listed.inner_text()
    page.get_by_test_id("key-count").filter(has_text="3 keys").wait_for()
    created = [k for k in host.get("/api/keys").json()["keys"] if k["name"] == "CI render bot"][0]
    assert created["rate_limit"] == 250 and created["metadata"] == {"team": "render", "env": "ci"}
    assert created["scopes"] == ["generate"]  # the scope picker's preselected choice
    screenshot(page, "panel-list.png")

    # usage of the busy key: chart, top endpoints, successes against failures
    row(page, "nightly batch").locator(".cak-row-main").click()
    usage = row(page, "nightly batch").get_by_test_id("usage")
    usage.locator(".cak-chart").wait_for()
    assert usage.locator(".cak-chart rect").count() == 30
    label = usage.locator(".cak-chart").get_attribute("aria-label")
    assert "8 in total" in label, label
    assert "6 succeeded" in usage.inner_text() and "2 failed" in usage.inner_text()
    endpoints = usage.locator(".cak-endpoints li").all_inner_texts()
    assert any("GET /usage" in e and "8" in e and "2 failed" in e for e in endpoints), endpoints
    screenshot(row(page, "nightly batch"), "panel-usage-today.png")
    row(page, "nightly batch").locator(".cak-row-main").click()

    # edit: rename, change the limit
    row(page, "CI render bot").locator(".cak-row-main").click()
    row(page, "CI render bot").get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit “CI render bot”")
    assert edit.get_by_label("Metadata value 2").input_value() == "ci"
    edit.get_by_label("Name", exact=True).fill("CI render bot v2")
    edit.get_by_label("Rate limit (requests per hour)").fill("500")
    edit.get_by_role("button", name="Save").click()
    toast(page, "success", "CI render bot v2")
    edit.wait_for(state="detached")
    assert page.evaluate("document.activeElement.textContent").strip() == "Edit", "focus back on Edit"
    server = host.get(f"/api/keys/{created['key_id']}").json()
    assert server["name"] == "CI render bot v2" and server["rate_limit"] == 500
    assert server["metadata"] == {"team": "render", "env": "ci"}
    renamed = row(page, "CI render bot v2")
    assert "/ 500 this hour" in renamed.inner_text()

    # disable, then enable again
    renamed.get_by_role("button", name="Disable").click()
    toast(page, "success", "API key disabled")
    renamed.locator(".cak-chip-off").wait_for()
    assert use_key(host, secret) == [401]
    renamed.get_by_role("button", name="Enable").click()
    toast(page, "success", "API key enabled")
    renamed.locator(".cak-chip-off").wait_for(state="detached")
    assert use_key(host, secret) == [200]

    # delete: Cancel keeps it, confirming removes it
    renamed.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete this API key?")
    assert page.evaluate("document.activeElement.textContent") == "Cancel"
    confirm.get_by_role("button", name="Cancel").click()
    confirm.wait_for(state="detached")
    assert use_key(host, secret) == [200]
    renamed.get_by_role("button", name="Delete").click()
    confirm.get_by_role("button", name="Delete key").click()
    toast(page, "success", "API key deleted")
    renamed.wait_for(state="detached")
    assert use_key(host, secret) == [401]
    assert "CI render bot" not in json.dumps(host.get("/api/keys").json())
    page.get_by_test_id("key-count").filter(has_text="2 keys").wait_for()

    assert not page.locator(".p-toast-message-error").count()
    assert not seen["errors"], seen["errors"]
    assert secret_is_gone(page, secret)


def test_usage_chart_shows_thirty_days(context, host):
    """The server cannot backdate usage, so the key's real answer gets a month of
    history added on its way to the page; the chart must draw what it is given."""
    key = host.create_key("chart key", rate_limit=1000)
    assert use_key(host, key["api_key"], 3) == [200] * 3
    today = datetime.datetime.now(datetime.timezone.utc).date()
    history = {(today - datetime.timedelta(days=back)).isoformat(): count
               for back, count in [(0, 3), (1, 12), (3, 4), (5, 40), (6, 18), (9, 7), (14, 22), (20, 25),
                                   (21, 9), (29, 1), (31, 500)]}  # 31 days back: outside the window
    endpoints = [{"method": "POST", "route": "/prompt", "requests": 90, "successful": 84, "failed": 6},
                 {"method": "GET", "route": "/history/{prompt_id}", "requests": 30, "successful": 30, "failed": 0},
                 {"method": "GET", "route": "/view", "requests": 16, "successful": 15, "failed": 1},
                 {"method": "GET", "route": "/usage", "requests": 3, "successful": 3, "failed": 0},
                 {"method": "GET", "route": "/queue", "requests": 2, "successful": 2, "failed": 0},
                 {"method": "GET", "route": "/system_stats", "requests": 1, "successful": 1, "failed": 0}]

    def add_history(route):
        response = route.fetch()
        body = response.json()
        body["usage_stats"].update(requests_per_day=history, endpoints=endpoints, total_requests=141,
                                   successful_requests=134, failed_requests=7)
        route.fulfill(response=response, json=body)

    page = context.new_page()
    page.route(re.compile(r".*/api/keys/[^/?]+\?days=30$"), add_history)
    open_panel(page, host)
    row(page, "chart key").locator(".cak-row-main").click()
    usage = row(page, "chart key").get_by_test_id("usage")
    chart = usage.locator(".cak-chart")
    chart.wait_for()
    bars = chart.evaluate("""svg => [...svg.querySelectorAll('rect')].map(r => ({
        h: +r.getAttribute('height'), zero: r.classList.contains('cak-bar-zero'),
        title: r.querySelector('title').textContent}))""")
    assert len(bars) == 30
    assert [b["zero"] for b in bars].count(False) == 10  # the day 31 back is not drawn
    tallest = max(bars, key=lambda b: b["h"])
    assert "40 requests" in tallest["title"] and tallest["h"] == 58
    assert bars[-1]["title"].endswith("3 requests") and bars[0]["title"].endswith("1 requests")
    assert "busiest day" in chart.get_attribute("aria-label") and "with 40" in chart.get_attribute("aria-label")
    usage.get_by_text("Requests by day").click()
    assert usage.locator(".cak-chart-table tbody tr").count() == 10
    assert "134 succeeded" in usage.inner_text() and "7 failed (5.0%)" in usage.inner_text()
    top = usage.locator(".cak-endpoints li").all_inner_texts()
    assert len(top) == 5 and top[0].startswith("POST /prompt") and "6 failed" in top[0]
    usage.get_by_text("Requests by day").click()
    screenshot(row(page, "chart key"), "panel-usage-chart.png")


# ---- workflows, workflow limits, activity -------------------------------------------------

def test_workflows_job_limits_and_activity(context, host):
    key = host.create_key("workflow bot", rate_limit=500)
    host.create_key("idle key")
    for workflow in (COMPLETES, COMPLETES, FAILS):
        queue_prompt(host, key["api_key"], workflow)
    jobs = wait_for_jobs(host, f"/api/keys/{key['key_id']}?days=30",
                         lambda jobs: jobs["prompts_queued"] == 3 and jobs["prompts_waiting"] == 0)
    assert (jobs["prompts_completed"], jobs["prompts_failed"], jobs["prompts_interrupted"]) == (2, 1, 0)

    context.set_default_timeout(10000)
    page = context.new_page()
    page.set_viewport_size({"width": 1100, "height": 1300})
    seen = watch(page)
    open_panel(page, host)
    narrow_sidebar(page)
    lib = f"await import('/extensions/{FOLDER}/api-keys-lib.js')"
    durations = page.evaluate(f"""async () => {{ const lib = {lib};
        return [0, 0.003, 0.5, 4.24, 12, 59.6, 192, 3600, 3725, 90061].map(lib.formatDuration); }}""")
    assert durations == ["0 s", "3 ms", "500 ms", "4.2 s", "12 s", "1 min", "3 min 12 s", "1 h", "1 h 2 min", "1 d 1 h"]
    run_time = page.evaluate(f"async () => ({lib}).formatDuration({jobs['execution_seconds']})")

    # A. the key's Workflows: counts by outcome and the execution time, compact at 320 px
    bot = row(page, "workflow bot")
    bot.locator(".cak-row-main").click()
    workflows = bot.get_by_test_id("workflows")
    workflows.wait_for()
    assert workflow_numbers(workflows) == {"queued": "3", "waiting": "0", "completed": "2", "failed": "1",
                                           "interrupted": "0", "time": run_time}
    labels = workflows.locator("dt").all_inner_texts()
    assert labels == ["Queued", "Waiting now", "Completed", "Failed", "Interrupted", "Run time"], labels
    assert workflows.get_by_role("heading", name="Workflows").is_visible()
    assert workflows.evaluate("s => s.querySelector('dl').getBoundingClientRect().height") < 110, "two rows of three"
    assert bot.get_by_test_id("job-limits").inner_text() == "Unlimited"
    assert_fits(page)
    screenshot(bot, "panel-workflows.png")
    row(page, "idle key").locator(".cak-row-main").click()
    idle = row(page, "idle key").get_by_test_id("workflows")
    assert "No workflows queued with this key in the last 30 days." in idle.inner_text()
    bot.locator(".cak-row-main").click()

    # B. workflow limits in the edit dialog, checked as the server checks them
    bot.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit “workflow bot”")
    per_hour = edit.get_by_label("Prompts per hour")
    waiting = edit.get_by_label("Prompts waiting at once")
    assert per_hour.input_value() == "" and waiting.input_value() == ""
    assert per_hour.get_attribute("placeholder") == "Unlimited"
    assert edit.get_by_role("group", name="Workflow limits (optional)").is_visible()
    assert "Empty means unlimited" in edit.inner_text()
    per_hour.fill("ten")
    waiting.fill("1000000001")
    edit.get_by_role("button", name="Save").click()
    text = edit.inner_text()
    assert "Enter a whole number" in text and "Use 0 to 1,000,000,000" in text
    assert per_hour.get_attribute("aria-invalid") == "true" and waiting.get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == per_hour.get_attribute("id"), "focus on the first wrong field"
    assert not [m for m, _ in api_calls(seen, r"/api/keys/") if m == "PATCH"]
    screenshot(edit, "panel-job-limits-errors.png")
    per_hour.fill(" 10 ")
    waiting.fill("2")
    assert edit.locator(".cak-field-error:visible").count() == 0, "a message goes once its value is edited"
    assert per_hour.get_attribute("aria-invalid") is None
    screenshot(page, "panel-job-limits-dialog.png")
    with page.expect_request(lambda r: r.method == "PATCH") as sent:
        edit.get_by_role("button", name="Save").click()
    assert json.loads(sent.value.post_data) == {"job_limits": {"prompts_per_hour": 10, "max_waiting": 2}}
    toast(page, "success", "“workflow bot” saved")
    edit.wait_for(state="detached")
    assert page.evaluate("document.activeElement.textContent").strip() == "Edit", "focus back on Edit"
    server = host.get(f"/api/keys/{key['key_id']}").json()
    assert server["job_limits"] == {"prompts_per_hour": 10, "max_waiting": 2}
    assert server["rate_limit"] == 500 and server["name"] == "workflow bot"
    assert bot.get_by_test_id("job-limits").inner_text() == "10 prompts per hour · 2 waiting at once"

    # emptying a field makes it unlimited again; both are sent, as PATCH replaces both
    bot.get_by_role("button", name="Edit").click()
    assert edit.get_by_label("Prompts per hour").input_value() == "10"
    edit.get_by_label("Prompts waiting at once").fill("")
    with page.expect_request(lambda r: r.method == "PATCH") as sent:
        edit.get_by_role("button", name="Save").click()
    assert json.loads(sent.value.post_data) == {"job_limits": {"prompts_per_hour": 10, "max_waiting": None}}
    toast(page, "success", "“workflow bot” saved")
    edit.wait_for(state="detached")
    assert host.get(f"/api/keys/{key['key_id']}").json()["job_limits"] == {"prompts_per_hour": 10, "max_waiting": None}
    assert bot.get_by_test_id("job-limits").inner_text() == "10 prompts per hour · any number waiting"

    # and in the create dialog
    page.get_by_role("button", name="New key").click()
    create = page.get_by_role("dialog", name="New API key")
    create.get_by_label("Name", exact=True).fill("queue blocked")
    create.get_by_label("Prompts per hour").fill("0")
    create.get_by_role("button", name="Create key").click()
    shown = page.get_by_role("dialog", name="Key created: queue blocked")
    blocked_secret = shown.get_by_test_id("new-key").input_value()
    shown.get_by_role("button", name="Done").click()
    no_dialog(page)
    blocked = [k for k in host.get("/api/keys").json()["keys"] if k["name"] == "queue blocked"][0]
    assert blocked["job_limits"] == {"prompts_per_hour": 0, "max_waiting": None}
    assert requests.post(host.url("/prompt"), json={"prompt": COMPLETES}, headers={"X-API-Key": blocked_secret},
                         timeout=10).status_code == 429, "the limit set in the panel is the server's"
    blocked_secret = None

    # C. the activity: collapsed, loaded when opened, key names instead of ids
    activity = page.get_by_test_id("activity")
    toggle = activity.get_by_role("button", name="Activity", exact=True)
    assert toggle.get_attribute("aria-expanded") == "false"
    assert not activity.get_by_test_id("activity-list").is_visible()
    assert not api_calls(seen, r"/api/audit"), "nothing is loaded before the section is opened"
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    activity.get_by_test_id("activity-status").filter(has_text="events shown").wait_for()
    assert [url for _, url in api_calls(seen, r"/api/audit")][-1].endswith("/api/audit?limit=50")
    events = activity.locator(".cak-event")
    created = activity.locator(".cak-event[data-action=key_create]", has_text="workflow bot")
    assert created.count() == 1
    text = created.inner_text()
    assert "Key created “workflow bot”" in text and "500 requests per hour" in text
    assert "Admin on this machine" in text and "127.0.0.1" in text
    assert key["key_id"] not in text, "the name, not the id"
    updates = activity.locator(".cak-event[data-action=key_update]", has_text="workflow bot")
    assert updates.count() == 2
    assert all("Key changed “workflow bot”" in t and "Changed workflow limits" in t for t in updates.all_inner_texts())
    assert activity.locator(".cak-event[data-action=key_create]", has_text="queue blocked").count() == 1
    first = events.first.inner_text()
    assert "queue blocked" in first, "newest first"
    oldest = events.last.inner_text()
    assert "Mode changed" in oldest and "Now “enable”" in oldest and "Server configuration" in oldest
    assert events.count() == len(host.get("/api/audit").json()["events"])
    assert activity.get_by_role("button", name="Load more").is_hidden()
    assert "that is all" in activity.get_by_test_id("activity-status").inner_text()
    assert "comfy_" not in activity.inner_text()
    assert_fits(page)
    screenshot(activity, "panel-activity.png")

    # a change made in the panel shows up at once while the section is open
    row(page, "queue blocked").locator(".cak-row-main").click()
    row(page, "queue blocked").get_by_role("button", name="Disable").click()
    toast(page, "success", "API key disabled")
    activity.locator(".cak-event[data-action=key_disable]", has_text="queue blocked").wait_for()
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "false" and events.count() == 0
    assert not page.locator(".p-toast-message-error").count()
    assert not seen["errors"], seen["errors"]


def test_activity_load_more_by_keyboard(context, host):
    busy = host.create_key("busy key")
    for i in range(55):
        assert host.patch(f"/api/keys/{busy['key_id']}", json={"rate_limit": 101 + i}).status_code == 200
    gone = host.create_key("short lived")
    assert host.delete(f"/api/keys/{gone['key_id']}").status_code == 200
    total = len(host.get("/api/audit?limit=1000").json()["events"])
    assert total == 59  # mode change, 2 creations, 55 changes, 1 deletion

    page = context.new_page()
    seen = watch(page)
    open_panel(page, host)
    page.get_by_test_id("key-count").filter(has_text="1 key").wait_for()
    activity = page.get_by_test_id("activity")
    toggle = activity.get_by_role("button", name="Activity", exact=True)
    toggle.focus()
    page.keyboard.press("Enter")
    status = activity.get_by_test_id("activity-status")
    status.filter(has_text="50 events shown.").wait_for()
    events = activity.locator(".cak-event")
    assert events.count() == 50
    # a deleted key keeps the name the trail recorded
    assert "Key deleted “short lived”" in events.nth(0).inner_text()
    assert "Key created “short lived”" in events.nth(1).inner_text()
    assert "Key changed “busy key”" in events.nth(2).inner_text()
    ids = [int(i) for i in events.evaluate_all("items => items.map(e => e.dataset.eventId)")]
    assert ids == sorted(ids, reverse=True)

    more = activity.get_by_role("button", name="Load more")
    more.focus()
    page.keyboard.press("Enter")
    status.filter(has_text="59 events shown; that is all.").wait_for()
    assert api_calls(seen, r"/api/audit")[-1][1].endswith(f"/api/audit?limit=50&before={min(ids)}")
    assert events.count() == 59
    assert more.is_hidden()
    focused = page.evaluate("document.activeElement.dataset.eventId")
    assert int(focused) == max(i for i in (e["id"] for e in host.get("/api/audit?limit=1000").json()["events"])
                               if i < min(ids)), "focus moves on to the first older event"
    assert "Key created “busy key”" in events.nth(57).inner_text()
    assert "Mode changed" in events.nth(58).inner_text()

    # Refresh reloads an open activity from the newest event
    host.patch(f"/api/keys/{busy['key_id']}", json={"name": "busy key renamed"})
    page.get_by_role("button", name="Refresh").click()
    activity.locator(".cak-event").first.filter(has_text="Key changed “busy key renamed”").wait_for()
    status.filter(has_text="50 events shown.").wait_for()
    assert "Changed name" in events.first.inner_text()

    toggle.focus()
    page.keyboard.press("Space")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert not activity.get_by_test_id("activity-list").is_visible()
    assert not seen["errors"], seen["errors"]


def _nested(depth):
    value = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_client_validation_matches_the_server(context, host):
    """The panel's checks (web/api-keys-lib.js) accept exactly what core/validation.py accepts."""
    validation = package_module("core.validation")
    names = ["", "   ", "a", " padded ", "x" * 100, "x" * 101, " " + "y" * 100 + " ", "tab\there", "line\nbreak",
             "\x85trimmed by python\x85", "é" * 100, "😀" * 100, "😀" * 101, "zero\u200bwidth", "del\x7f"]
    metadata = [{}, {"a": "b"}, _nested(8), _nested(9), {"l": [[[[[[[["x"]]]]]]]]}, {"l": [[[[[[[[["x"]]]]]]]]]},
                {"k": "x" * 16375}, {"k": "x" * 16376}, {"k": "é" * 8187}, {"k": "é" * 8188},
                {"a": 1, "b": [1, 2, {"c": None}], "d": True}, [], "text"]
    job_limits = ["", "  ", "0", "10", " 42 ", "007", "1000000000", "1000000001", "99999999999999999999", "-1", "1.5",
                  "1e3", "abc", "0x10", "\uff11\uff12", "null"]
    page = context.new_page()
    page.goto(host.base + "/")
    page.wait_for_selector("body[data-comfy-ready=true]")
    client = page.evaluate("""async ([folder, names, metadata, jobLimits]) => {
        const lib = await import(`/extensions/${folder}/api-keys-lib.js`);
        const ok = (fn) => { try { return [true, fn()]; } catch (e) { return [false, e.message]; } };
        return {
            names: names.map(n => ok(() => lib.validateName(n))),
            metadata: metadata.map(m => ok(() => lib.validateMetadata(m))[0]),
            rates: ["0", "100", " 42 ", "1000000000", "1000000001", "-1", "1.5", "1e3", "", "abc", "0x10"]
                .map(r => ok(() => lib.parseRateLimit(r))),
            json: ['{"a": 1, "a": 2}', '{"a": {"b": 1, "b": 2}}', '{"a": [{"b": 1}, {"b": 2}]}', '{"a": "b", "c": "a"}',
                   '[1]', 'null', '{"x": NaN}', '']
                .map(j => ok(() => lib.parseMetadataJson(j))[0]),
            jobLimits: jobLimits.map(j => ok(() => lib.parseJobLimit(j, "max_waiting"))),
        };
    }""", [FOLDER, names, metadata, job_limits])

    for name, (accepted, value) in zip(names, client["names"]):
        try:
            expected = validation.validate_name(name)
        except validation.InvalidInput:
            assert not accepted, (name, value)
        else:
            assert accepted and value == expected, (name, value)
    for meta, accepted in zip(metadata, client["metadata"]):
        try:
            validation.validate_metadata(meta)
            assert accepted, meta
        except validation.InvalidInput:
            assert not accepted, str(meta)[:80]
    assert [r[1] if r[0] else None for r in client["rates"]] == [0, 100, 42, 1_000_000_000] + [None] * 7
    assert client["json"] == [False, False, True, True, False, False, False, True]
    # workflow limits: empty is unlimited (null); what the panel accepts the server accepts, and the edges agree
    assert [r[1] if r[0] else "refused" for r in client["jobLimits"]] == (
        [None, None, 0, 10, 42, 7, 1_000_000_000] + ["refused"] * 9)
    for accepted, value in client["jobLimits"]:
        if accepted:
            assert validation.validate_job_limits({"prompts_per_hour": value, "max_waiting": value})["max_waiting"] == value
    for refused in (1_000_000_001, -1, 1.5, True, "10"):
        with pytest.raises(validation.InvalidInput):
            validation.validate_job_limits({"max_waiting": refused})


# ---- errors ---------------------------------------------------------------------------------

def test_client_validation_then_server_errors_are_toasts(context, host):
    page = context.new_page()
    seen = watch(page)
    open_panel(page, host)
    page.get_by_test_id("key-count").filter(has_text="0 keys").wait_for()

    # the panel checks the server's limits before sending
    page.get_by_role("button", name="New key").click()
    dialog = page.get_by_role("dialog", name="New API key")
    name = dialog.get_by_label("Name", exact=True)
    name.fill("x" * 101)
    dialog.get_by_label("Rate limit (requests per hour)").fill("12.5")
    dialog.get_by_role("button", name="JSON").click()
    dialog.get_by_label("Metadata as JSON").fill('{"a": 1, "a": 2}')
    dialog.get_by_role("button", name="Create key").click()
    assert "at most 100 characters" in dialog.inner_text()
    assert "whole number" in dialog.inner_text()
    assert 'the key "a" twice' in dialog.inner_text()
    assert name.get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == name.get_attribute("id")
    dialog.get_by_label("Metadata as JSON").fill(json.dumps({"big": "x" * 17000}))
    dialog.get_by_role("button", name="Create key").click()
    assert "the limit is 16,384" in dialog.inner_text()
    assert not api_calls(seen, r"/api/keys$") or all(m == "GET" for m, _ in api_calls(seen, r"/api/keys$"))

    # with the client check bypassed, the server's own message reaches a toast
    def stretch_name(route):
        body = json.loads(route.request.post_data)
        body["name"] = "y" * 101
        route.continue_(post_data=json.dumps(body))

    page.route("**/api/keys", lambda route: stretch_name(route) if route.request.method == "POST" else route.continue_())
    name.fill("valid name")
    dialog.get_by_label("Rate limit (requests per hour)").fill("10")
    dialog.get_by_label("Metadata as JSON").fill('{"ok": true}')
    dialog.get_by_role("button", name="Create key").click()
    error = toast(page, "error", "'name' must be 1 to 100 characters after trimming")
    assert "Could not create the key" in error.inner_text()
    assert dialog.is_visible()  # the form stays, nothing is lost
    # said in the dialog too (a modal makes the toasts inert for screen readers), at the field
    assert "'name' must be 1 to 100 characters" in dialog.locator(".cak-field-error").first.inner_text()
    assert name.get_attribute("aria-invalid") == "true"
    page.unroute("**/api/keys")
    screenshot(page, "panel-server-error-toast.png")
    dialog.get_by_role("button", name="Cancel").click()

    # a key deleted elsewhere: the panel says what the server said and refreshes
    gone = host.create_key("deleted elsewhere")
    page.get_by_role("button", name="Refresh").click()
    row(page, "deleted elsewhere").locator(".cak-row-main").click()
    assert host.delete(f"/api/keys/{gone['key_id']}").status_code == 200
    row(page, "deleted elsewhere").get_by_role("button", name="Disable").click()
    toast(page, "error", f"no key with key_id '{gone['key_id']}'")
    row(page, "deleted elsewhere").wait_for(state="detached")
    assert not seen["errors"], seen["errors"]


# ---- who you are ------------------------------------------------------------------------------

def test_require_mode_key_holder_sees_only_their_own_usage(context, make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    admin = _admin_session(host)
    mine = admin.post(host.url("/api/keys"), json={"name": "viewer laptop", "rate_limit": 1000}, timeout=10).json()
    admin.post(host.url("/api/keys"), json={"name": "someone else's key"}, timeout=10)
    assert use_key(host, mine["api_key"], 4) == [200] * 4
    assert use_key(host, mine["api_key"], 1, "/api/usage?days=0") == [400]
    queue_prompt(host, mine["api_key"], COMPLETES)
    wait_for_jobs(host, "/api/usage?days=30", lambda jobs: jobs["prompts_completed"] == 1,
                  headers={"X-API-Key": mine["api_key"]})

    page = context.new_page()
    seen = watch(page)
    page.goto(host.base + "/")
    assert page.url.startswith(host.base + "/login")
    page.click("#tab-key")
    page.fill("#secret", mine["api_key"])
    page.click("#submit")
    page.wait_for_url(host.base + "/")
    open_panel(page, host)

    own = page.get_by_test_id("own-usage")
    own.get_by_test_id("usage").wait_for()
    assert "Key holder" in page.get_by_test_id("principal").inner_text()
    assert "viewer laptop" in own.inner_text()
    assert re.search(r"\d+ / 1,000 this hour", own.inner_text())
    # the browser's own requests count too (its session is the key), so look at /usage
    own.locator(".cak-endpoints li").first.wait_for()  # the list renders after the usage numbers
    endpoints = own.locator(".cak-endpoints li").all_inner_texts()
    assert any(e.startswith("GET /usage") and "1 failed" in e for e in endpoints), endpoints
    assert own.locator(".cak-chart rect").count() == 30
    # the workflows this key queued
    assert workflow_numbers(own.get_by_test_id("workflows")) == {
        "queued": "1", "waiting": "0", "completed": "1", "failed": "0", "interrupted": "0",
        "time": page.evaluate(f"""async () => (await import('/extensions/{FOLDER}/api-keys-lib.js'))
            .formatDuration({host.get("/api/usage?days=30", headers={"X-API-Key": mine["api_key"]})
                             .json()["usage_stats"]["jobs"]["execution_seconds"]})""")}
    assert "someone else" not in page.get_by_test_id("api-keys-panel").inner_text()
    assert page.get_by_test_id("key-list").count() == 0
    assert page.get_by_role("button", name="New key").count() == 0
    assert page.get_by_test_id("activity").count() == 0, "the activity is for admins"
    assert not api_calls(seen, r"/api/keys"), "a key holder's panel must not ask for the key list"
    assert not api_calls(seen, r"/api/audit")
    assert not page.locator(".p-toast-message-error").count()
    screenshot(page, "panel-key-holder-require.png")

    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(re.compile(r".*/login\?next=.*"))
    assert requests.get(host.url("/api/keys"), timeout=10).status_code == 401
    assert not seen["errors"], seen["errors"]


def test_enable_mode_not_admin_explains_how_to_become_admin(context, make_host):
    # Listening beyond loopback: a local browser is not trusted as admin.
    host = make_host(listen="0.0.0.0", env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    key = _admin_session(host).post(host.url("/api/keys"), json={"name": "scripts"}, timeout=10).json()
    page = context.new_page()
    seen = watch(page)
    open_panel(page, host)

    help_box = page.get_by_test_id("become-admin")
    help_box.wait_for()
    text = help_box.inner_text()
    assert "Not signed in" in page.get_by_test_id("principal").inner_text()
    assert "Sign in with the admin password" in text
    assert "machine ComfyUI runs on" in text
    assert f"python custom_nodes/{FOLDER} create-key --name admin --admin" in text
    assert "does not treat local requests as admin" in text
    assert not api_calls(seen, r"/api/keys"), "no key list request that would only fail"
    assert not page.locator(".p-toast-message").count(), "explained, not shown as errors"
    screenshot(page, "panel-not-admin.png")

    # a wrong password is an error toast with the server's message
    help_box.get_by_role("button", name="Sign in now").click()
    form = page.get_by_role("form", name="Sign in")
    form.locator("input[type=password]").fill("not the password")
    form.get_by_role("button", name="Sign in").click()
    toast(page, "error", "wrong password or API key")

    # a non-admin key: own usage, still the explanation
    form.get_by_role("radio", name="API key").check()
    form.locator("input[type=password]").fill(key["api_key"])
    form.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("own-usage").get_by_test_id("usage").wait_for()
    assert "Key holder" in page.get_by_test_id("principal").inner_text()
    assert page.get_by_test_id("become-admin").is_visible()

    # the admin password: the key manager appears
    page.get_by_role("button", name="Sign in as admin").click()
    form = page.get_by_role("form", name="Sign in")
    form.locator("input[type=password]").fill(PASSWORD)
    form.get_by_role("button", name="Sign in").click()
    toast(page, "success", "signed in as admin")
    row(page, "scripts").wait_for()
    assert "signed in with the admin password" in page.get_by_test_id("principal").inner_text()

    page.get_by_role("button", name="Sign out", exact=True).click()
    page.get_by_test_id("become-admin").wait_for()
    assert not seen["errors"], seen["errors"]


def test_admin_sets_the_admin_password_from_the_panel(context, host):
    page = context.new_page()
    open_panel(page, host)
    assert requests.post(host.url("/api/auth/login"), json={"password": PASSWORD}, timeout=10).status_code == 401
    page.get_by_role("button", name="Set admin password").click()
    dialog = page.get_by_role("dialog", name="Admin password")
    dialog.get_by_label("New admin password").fill("short")
    dialog.get_by_label("Repeat the password").fill("short")
    dialog.get_by_role("button", name="Save password").click()
    assert "at least 8 characters" in dialog.inner_text()
    dialog.get_by_label("New admin password").fill(PASSWORD)
    dialog.get_by_label("Repeat the password").fill(PASSWORD + "x")
    dialog.get_by_role("button", name="Save password").click()
    assert "differ" in dialog.inner_text()
    dialog.get_by_label("Repeat the password").fill(PASSWORD)
    dialog.get_by_role("button", name="Save password").click()
    toast(page, "success", "Admin password saved")
    no_dialog(page)
    assert requests.post(host.url("/api/auth/login"), json={"password": PASSWORD}, timeout=10).status_code == 200
    page.get_by_role("button", name="Change admin password").wait_for()


def test_bootstrap_local_browser_creates_non_admin_keys_and_is_told_how_to_become_admin(context, make_host):
    host = make_host(local_admin=False)  # the shipped default: TRUST_LOCALHOST=bootstrap
    page = context.new_page()
    seen = watch(page)
    open_panel(page, host)
    assert "This machine" in page.get_by_test_id("principal").inner_text()
    note = page.get_by_test_id("bootstrap-note")
    assert "setup code" in note.inner_text() and f"python custom_nodes/{FOLDER} set-password" in note.inner_text()
    assert page.get_by_role("button", name="Set admin password").count() == 0
    assert page.get_by_test_id("activity").is_hidden(), "the activity is for admins"
    assert page.get_by_test_id("access").is_hidden(), "so is the access view"

    page.get_by_role("button", name="New key").click()
    dialog = page.get_by_role("dialog", name="New API key")
    assert dialog.get_by_role("radio", name="Admin").is_disabled()  # no admin keys from here
    assert "Only an admin can make admin keys" in dialog.inner_text()
    dialog.get_by_label("Name", exact=True).fill("laptop script")
    dialog.get_by_role("button", name="Create key").click()
    shown = page.get_by_role("dialog", name="Key created: laptop script")
    secret = shown.get_by_test_id("new-key").input_value()
    assert requests.get(host.url("/api/usage"), headers={"X-API-Key": secret}, timeout=10).status_code == 200
    page.keyboard.press("Escape")
    row(page, "laptop script").wait_for()
    assert [k["scopes"] for k in host.get("/api/keys").json()["keys"]] == [["generate"]]
    assert not api_calls(seen, r"/api/audit")
    assert not page.locator(".p-toast-message-error").count()
    screenshot(page, "panel-bootstrap.png")
    assert not seen["errors"], seen["errors"]


def test_a_password_from_the_environment_is_shown_as_managed(context, make_host):
    host = make_host(env={"COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    page = context.new_page()
    open_panel(page, host)
    assert "managed by the environment" in page.get_by_test_id("password-managed").inner_text()
    assert page.get_by_role("button", name="Change admin password").count() == 0


def _admin_session(host):
    session = requests.Session()
    assert session.post(host.url("/api/auth/login"), json={"password": PASSWORD}, timeout=10).status_code == 200
    return session


# ---- layout, theme, keyboard, scale ----------------------------------------------------------

def test_320px_wide_sidebar_does_not_overflow(context, host):
    long_name = "averyveryverylongkeynamewithoutanyspacesatall" * 2
    key = host.create_key(long_name, rate_limit=1_000_000_000,
                          metadata={"url": "https://example.com/" + "path/" * 30, "nested": {"a": [1, 2, 3]}})
    host.create_key("short", rate_limit=0)
    use_key(host, key["api_key"], 3)
    page = context.new_page()
    open_panel(page, host)
    narrow_sidebar(page)
    row(page, long_name).locator(".cak-row-main").click()
    row(page, long_name).get_by_test_id("usage").locator(".cak-chart").wait_for()
    assert_fits(page)
    screenshot(page, "panel-320px.png")

    # the dialogs fit a narrow window too
    page.set_viewport_size({"width": 340, "height": 700})
    page.get_by_role("button", name="New key").click()
    dialog = page.get_by_role("dialog", name="New API key")
    sizes = dialog.evaluate("d => [d.scrollWidth, d.clientWidth, d.getBoundingClientRect().right, innerWidth]")
    assert sizes[0] <= sizes[1] and sizes[2] <= sizes[3], sizes
    screenshot(page, "panel-320px-create-dialog.png")
    dialog.get_by_role("button", name="Cancel").click()

    # metadata that is more than flat text opens as JSON, and stays JSON
    row(page, long_name).get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name=re.compile("^Edit"))
    raw = edit.get_by_label("Metadata as JSON")
    assert json.loads(raw.input_value()) == key["metadata"]
    edit.get_by_role("button", name="Fields").click()
    assert "not text" in edit.inner_text() and raw.is_visible()
    raw.fill('{"url": "https://example.com/", "team": "a"}')
    edit.get_by_role("button", name="Fields").click()
    assert edit.get_by_label("Metadata key 2").input_value() == "team"
    sizes = edit.evaluate("d => [d.scrollWidth, d.clientWidth]")
    assert sizes[0] <= sizes[1], sizes
    screenshot(page, "panel-320px-edit-dialog.png")
    edit.get_by_role("button", name="Save").click()
    toast(page, "success", "saved")
    assert host.get(f"/api/keys/{key['key_id']}").json()["metadata"] == {"url": "https://example.com/", "team": "a"}


def test_dark_and_light_themes_follow_comfyui_variables(context, host):
    key = host.create_key("theme check", rate_limit=20, metadata={"owner": "qa"})
    use_key(host, key["api_key"], 5)
    disabled = host.create_key("disabled one")
    host.patch(f"/api/keys/{disabled['key_id']}", json={"is_active": False})
    queue_prompt(host, key["api_key"], COMPLETES)
    queue_prompt(host, key["api_key"], FAILS)
    wait_for_jobs(host, f"/api/keys/{key['key_id']}?days=30", lambda jobs: jobs["prompts_failed"] == 1)
    page = context.new_page()
    page.set_viewport_size({"width": 1100, "height": 1700})
    open_panel(page, host)
    row(page, "theme check").locator(".cak-row-main").click()
    row(page, "theme check").get_by_test_id("usage").locator(".cak-chart").wait_for()
    page.get_by_role("button", name="Activity", exact=True).click()
    page.get_by_test_id("activity-status").filter(has_text="that is all").wait_for()
    for name, variables, light, fg in (("dark", DARK, False, "rgb(255, 255, 255)"),
                                       ("light", LIGHT, True, "rgb(34, 34, 34)")):
        set_theme(page, variables, light)
        assert page.locator(".cak-title").evaluate("e => getComputedStyle(e).color") == fg
        assert page.locator(".cak-filter input").evaluate("e => getComputedStyle(e).color") == (
            "rgb(221, 221, 221)" if not light else "rgb(34, 34, 34)")
        screenshot(page, f"panel-theme-{name}.png")


def test_keyboard_only(context, host):
    host.create_key("keyboard key")
    page = context.new_page()
    page.goto(host.base + "/")
    page.wait_for_selector("body[data-comfy-ready=true]")
    page.locator(".comfyui-api-auth-tab-button").focus()
    page.keyboard.press("Enter")
    page.get_by_test_id("key-count").filter(has_text="1 key").wait_for()

    new_key = page.get_by_role("button", name="New key")
    new_key.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focus by keyboard: the ring must show
    assert new_key.evaluate("e => e === document.activeElement")
    assert new_key.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"

    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="New API key")
    dialog.wait_for()
    assert page.evaluate("document.activeElement.closest('.cak-field')?.querySelector('label')?.textContent") == "Name"
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert new_key.evaluate("e => e === document.activeElement"), "focus returns to the opener"

    # create a key with the keyboard alone, close the secret with Escape
    page.keyboard.press("Enter")
    page.keyboard.type("typed key")
    page.keyboard.press("Enter")
    shown = page.get_by_role("dialog", name="Key created: typed key")
    shown.wait_for()
    assert page.evaluate("document.activeElement.textContent").strip() == "Copy"
    page.keyboard.press("Escape")
    no_dialog(page)
    assert new_key.evaluate("e => e === document.activeElement"), "focus returns to the panel"

    toggle = row(page, "keyboard key").locator(".cak-row-main")
    toggle.focus()
    page.keyboard.press("Enter")
    assert toggle.get_attribute("aria-expanded") == "true"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").strip() == "Edit"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").strip() == "Rotate"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").strip() == "Delete"
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Delete this API key?")
    confirm.wait_for()
    page.keyboard.press("Escape")
    confirm.wait_for(state="detached")
    assert len(host.get("/api/keys").json()["keys"]) == 2
    toggle.focus()
    page.keyboard.press("Space")
    assert toggle.get_attribute("aria-expanded") == "false"


def test_clipboard_fallback_without_navigator_clipboard(context, host):
    page = context.new_page()
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined, configurable: true})")
    open_panel(page, host)
    page.get_by_role("button", name="New key").click()
    page.get_by_label("Name", exact=True).fill("fallback copy")
    page.get_by_role("button", name="Create key").click()
    shown = page.get_by_role("dialog", name="Key created: fallback copy")
    shown.get_by_role("button", name="Copy").click()
    toast(page, "success", "clipboard")
    shown.get_by_role("button", name="Done").click()
    shown.wait_for(state="detached")


def test_a_few_hundred_keys(context, host):
    for i in range(320):
        host.create_key(f"bulk key {i:03d}", rate_limit=100 + i)
    page = context.new_page()
    seen = watch(page)
    started = time.monotonic()
    open_panel(page, host)
    page.get_by_test_id("key-count").filter(has_text="320 keys").wait_for()
    assert time.monotonic() - started < 5
    assert page.locator(".cak-row").count() == 200  # the rest behind "Show more"
    page.get_by_role("button", name=re.compile(r"Show 120 more")).click()
    assert page.locator(".cak-row").count() == 320

    elapsed = page.evaluate("""() => {
        const select = document.querySelector('.cak-sort select');
        const started = performance.now();
        select.value = 'name';
        select.dispatchEvent(new Event('change'));
        return performance.now() - started;
    }""")
    assert elapsed < 150, f"re-sorting 320 keys took {elapsed:.0f} ms"
    page.get_by_label("Sort").select_option("created")
    page.get_by_label("Sort").select_option("name")
    first = page.locator(".cak-row .cak-name-text").first.text_content()
    assert first == "bulk key 000"
    page.get_by_role("button", name=re.compile("Ascending")).click()
    assert page.locator(".cak-row .cak-name-text").first.text_content() == "bulk key 319"

    page.get_by_label("Filter keys by name").fill("key 31")
    page.get_by_test_id("key-count").filter(has_text="10 of 320 keys match").wait_for()
    assert page.locator(".cak-row").count() == 10
    page.get_by_label("Filter keys by name").fill("no such key")
    page.get_by_text("No key matches this filter.").wait_for()

    per_row = api_calls(seen, r"/api/keys/")
    assert not per_row, f"per-row requests: {per_row[:3]}"
    assert len(api_calls(seen, r"/api/keys$")) == 1


def test_admin_signs_out_everywhere_from_the_panel(context, make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    other_admin = _admin_session(host)
    key = other_admin.post(host.url("/api/keys"), json={"name": "laptop", "rate_limit": 1000}, timeout=10).json()
    key_browser = requests.Session()
    assert key_browser.post(host.url("/api/auth/login"), json={"api_key": key["api_key"]}, timeout=10).ok
    page = context.new_page()
    seen = watch(page)
    page.goto(host.base + "/login")
    page.fill("#secret", PASSWORD)
    page.click("#submit")
    page.wait_for_url(host.base + "/")
    panel = open_panel(page, host)
    panel.get_by_role("button", name="Sign out everywhere").click()
    dialog = page.get_by_role("dialog", name="Sign out everywhere?")
    assert "API keys themselves keep working" in dialog.inner_text()
    assert dialog.get_by_label("Keep this browser signed in").is_checked()
    screenshot(page, "panel-sign-out-everywhere.png")
    dialog.get_by_role("button", name="Sign out everywhere").click()
    toast(page, "success", "2 sessions ended")
    no_dialog(page)
    assert other_admin.get(host.url("/api/keys"), timeout=10).status_code == 401
    assert key_browser.get(host.url("/api/usage"), timeout=10).status_code == 401
    assert requests.get(host.url("/api/usage"), headers={"X-API-Key": key["api_key"]}, timeout=10).status_code == 200
    assert page.evaluate("fetch('/api/keys').then(r => r.status)") == 200  # this browser kept its session
    # and once more without keeping this browser: back to the sign-in page
    panel.get_by_role("button", name="Sign out everywhere").click()
    dialog = page.get_by_role("dialog", name="Sign out everywhere?")
    dialog.get_by_label("Keep this browser signed in").uncheck()
    dialog.get_by_role("button", name="Sign out everywhere").click()
    page.wait_for_url(re.compile(r".*/login\?next=.*"))
    assert not seen["errors"], seen["errors"]
