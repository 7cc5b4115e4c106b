"""Scopes in the "API Keys" panel, in headless Chromium on the ComfyUI stand-in:
the scope picker of the create and edit forms, each key's scope in the list,
the admins' "Access" card (scopes, unclassified routes, route scopes, node
rules) and a SCOPE_REQUIRED refusal explained in plain words.
Screenshots go to tests/artifacts/ (gitignored)."""

import json
import time
import re

import pytest
from playwright.sync_api import expect
import requests

from browser_support import screenshot
from test_panel_browser import (  # noqa: F401 (browser and context are fixtures)
    assert_fits, browser, context, narrow_sidebar, no_dialog, open_panel, row, toast, watch)

pytestmark = pytest.mark.browser

PASSWORD = "scopes panel password 1"
RULES = {"generate": {"deny": ["SlowNode", "LoadImageFromUrl"]}, "admin": {"allow": ["SaveText"]}}


def create_in_panel(page, name, scope=None):
    page.get_by_role("button", name="New key").click()
    dialog = page.get_by_role("dialog", name="New API key")
    dialog.get_by_label("Name", exact=True).fill(name)
    if scope is not None:
        dialog.get_by_role("radio", name=scope, exact=True).check()
    return dialog


def test_the_scope_picker_creates_a_read_key_and_the_list_shows_each_scope(context, host):
    host.create_key("ops", scopes=["admin"])
    page = context.new_page()
    seen = watch(page)
    open_panel(page, host)
    page.get_by_test_id("key-count").filter(has_text="1 key").wait_for()
    dialog = create_in_panel(page, "catalog reader")
    picker = dialog.get_by_test_id("scope-picker")
    # three choices, generate preselected, each with the line saying what it allows (the server's words)
    radios = picker.get_by_role("radio")
    assert radios.count() == 3
    assert dialog.get_by_role("radio", name="Generate", exact=True).is_checked()
    text = picker.inner_text()
    for line in ("no workflows, no uploads", "queue workflows, upload inputs and fetch results", "everything: keys"):
        assert line in text, text
    dialog.get_by_role("radio", name="Read", exact=True).check()
    screenshot(dialog, "nodes-scope-picker.png")
    dialog.get_by_role("button", name="Create key").click()
    shown = page.get_by_role("dialog", name="Key created: catalog reader")
    secret = shown.get_by_test_id("new-key").input_value()
    page.keyboard.press("Escape")
    no_dialog(page)

    created = [k for k in host.get("/api/keys").json()["keys"] if k["name"] == "catalog reader"][0]
    assert created["scopes"] == ["read"]
    assert requests.get(host.url("/api/usage"), headers={"X-API-Key": secret}, timeout=10).json()["scopes"] == ["read"]
    assert row(page, "catalog reader").get_by_test_id("key-scope").inner_text() == "Read"
    assert row(page, "ops").get_by_test_id("key-scope").inner_text() == "Admin"
    # and a key made without choosing gets the preselected generate scope
    create_in_panel(page, "renderer").get_by_role("button", name="Create key").click()
    page.get_by_role("dialog", name="Key created: renderer").wait_for()
    page.keyboard.press("Escape")
    assert row(page, "renderer").get_by_test_id("key-scope").inner_text() == "Generate"
    assert [k["scopes"] for k in host.get("/api/keys").json()["keys"] if k["name"] == "renderer"] == [["generate"]]
    screenshot(page, "nodes-key-list-scopes.png")
    assert not page.locator(".p-toast-message-error").count()
    assert not seen["errors"], seen["errors"]


def test_an_admin_changes_a_keys_scope(context, host):
    key = host.create_key("script", rate_limit=1000)
    page = context.new_page()
    seen = watch(page)
    patches = []
    page.on("request", lambda request: patches.append(request.post_data) if request.method == "PATCH" else None)
    open_panel(page, host)
    listed = row(page, "script")
    assert listed.get_by_test_id("key-scope").inner_text() == "Generate"
    listed.locator(".cak-row-main").click()
    assert "Generate: read, plus queue workflows" in listed.get_by_test_id("scope-detail").inner_text()
    for scope, label in (("admin", "Admin"), ("read", "Read")):
        listed.get_by_role("button", name="Edit").click()
        dialog = page.get_by_role("dialog", name="Edit “script”")
        dialog.get_by_role("radio", name=label, exact=True).check()
        dialog.get_by_role("button", name="Save").click()
        toast(page, "success", "saved")
        no_dialog(page)
        assert host.get(f"/api/keys/{key['key_id']}").json()["scopes"] == [scope]
        assert row(page, "script").get_by_test_id("key-scope").inner_text() == label
    assert [json.loads(body) for body in patches] == [{"scopes": ["admin"]}, {"scopes": ["read"]}]
    # the key works with its new scope: a read key still reads its own usage
    assert requests.get(host.url("/api/usage"), headers={"X-API-Key": key["api_key"]}, timeout=10).status_code == 200
    screenshot(page, "nodes-scope-changed.png")
    assert not seen["errors"], seen["errors"]


def test_the_access_card_lists_node_rules_and_unclassified_routes(context, make_host):
    host = make_host(env={"COMFYUI_API_AUTH_NODE_RULES": json.dumps(RULES)})
    access = host.get("/api/auth/access").json()
    page = context.new_page()
    seen = watch(page)
    open_panel(page, host)
    card = page.get_by_test_id("access")
    # The stand-in's other custom nodes have routes nobody classified: the card
    # opens by itself the first time, for the operator to decide.
    toggle = card.get_by_role("button", name=re.compile("^Access"))
    expect(toggle).to_have_attribute("aria-expanded", "true")
    assert "unclassified route" in toggle.inner_text()
    rules = card.get_by_test_id("node-rules")
    rules.wait_for()
    text = rules.inner_text()
    assert "may run every node but: LoadImageFromUrl, SlowNode" in text, text
    assert "may run only: SaveText" in text, text
    assert "no workflows, no uploads" in card.get_by_test_id("access-scopes").inner_text()
    body = card.inner_text()
    assert "keys need the admin scope for them" in body and '{"/my_node/": "generate"}' in body
    assert "COMFYUI_API_AUTH_ROUTE_SCOPES" in body
    # whatever the server reports as unclassified (the stand-in's custom nodes) is listed
    for route in access["unclassified_routes"]:
        assert route["path"] in card.get_by_test_id("unclassified-routes").inner_text()
    for path in access["route_scopes"]:
        assert path in card.get_by_test_id("route-scopes").inner_text()
    screenshot(card, "nodes-access-card.png")
    assert not seen["errors"], seen["errors"]


def test_the_access_card_shows_unclassified_routes_and_route_scopes(context, make_host):
    """The two lists the runtime and the operator fill: the routes the stand-in's
    other custom nodes add that nobody classified, and COMFYUI_API_AUTH_ROUTE_SCOPES."""
    long_prefix = "/a_custom_node_with_a_long_name/" + "segment/" * 8
    host = make_host(env={"COMFYUI_API_AUTH_ROUTE_SCOPES": json.dumps(
        {"/my_node/echo": "generate", "/gallery/list": "read", long_prefix: "admin"})})
    page = context.new_page()
    open_panel(page, host)
    card = page.get_by_test_id("access")
    listed = card.get_by_test_id("unclassified-routes")
    listed.wait_for()  # routes nobody classified: the card opens by itself
    # /my_node/echo is opened by the setting; the other two routes are still nobody's.
    assert listed.locator("li").all_inner_texts() == ["GET /manager_like/effects", "POST /my_node/items/{item_id}"]
    assert "2 unclassified routes" in card.get_by_test_id("access-summary").inner_text()
    scopes = card.get_by_test_id("route-scopes").inner_text()
    assert "/my_node/echo \u2192 Generate" in scopes and "/gallery/list \u2192 Read" in scopes, scopes
    assert long_prefix in scopes
    assert "None: every scope may queue every installed node." in card.inner_text()
    screenshot(card, "nodes-access-unclassified.png")
    narrow_sidebar(page)  # long paths wrap in a 320 px sidebar
    assert_fits(page)
    screenshot(page, "nodes-access-320px.png")


def test_scope_required_is_explained_in_plain_words(context, make_host):
    # An admin key's browser session has the panel open; another admin takes the
    # admin scope away; the panel's next call is refused 403 SCOPE_REQUIRED.
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    session = requests.Session()
    assert session.post(host.url("/api/auth/login"), json={"password": PASSWORD}, timeout=10).status_code == 200
    key = session.post(host.url("/api/keys"), json={"name": "deputy", "scopes": ["admin"]}, timeout=10).json()
    page = context.new_page()
    page.goto(host.base + "/login")
    page.click("#tab-key")
    page.fill("#secret", key["api_key"])
    page.click("#submit")
    page.wait_for_url(host.base + "/")
    open_panel(page, host)
    row(page, "deputy").wait_for()  # the admin view, with the key list
    demoted = session.patch(host.url(f"/api/keys/{key['key_id']}"), json={"scopes": ["generate"]},
                            headers={"Origin": host.base}, timeout=10)
    assert demoted.status_code == 200, demoted.text
    message = "This key has the generate scope; this needs the admin scope."
    time.sleep(3)  # the session's process learns of the change within the refresh interval (2 s)
    page.get_by_role("button", name="New key").click()  # the admin view, still on screen, tries once more
    create = page.get_by_role("dialog", name="New API key")
    create.get_by_label("Name", exact=True).fill("one more")
    create.get_by_role("button", name="Create key").click()
    toast(page, "error", message)
    screenshot(page, "nodes-scope-required.png")
