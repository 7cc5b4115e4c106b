"""The panel and a key's lifecycle (README: Key lifecycle), in headless
Chromium on the stand-in: expiry shown and set or cleared, the allowlist
shown and edited, rotation with a grace period and the new secret shown once,
and a key holder's own card showing its scopes, expiry and addresses."""

import re
import time

import pytest
import requests

from test_panel_browser import (PASSWORD, _admin_session, browser, context, no_dialog, open_panel, row,  # noqa: F401
                                secret_is_gone, toast, use_key, watch)

pytestmark = pytest.mark.browser


def test_admin_sees_expiry_and_addresses_rotates_with_grace_and_edits_them(context, host):
    # an admin-scoped key: the edit form keeps its scopes as they are
    key = host.create_key("rotating", rate_limit=1000, scopes=["admin"], expires_in_days=3,
                          allowed_ips=["127.0.0.1", "::1"])
    gone = host.create_key("gone", scopes=["admin"])
    assert host.patch(f"/api/keys/{gone['key_id']}", json={"expires_at": time.time() - 60}).status_code == 200
    page = context.new_page()
    seen = watch(page)
    open_panel(page, host)
    row(page, "rotating").get_by_test_id("expiry").filter(has_text=re.compile(r"Expires in (3 days|72 hours)")).wait_for()
    assert row(page, "gone").get_by_test_id("expiry").inner_text() == "Expired"

    row(page, "rotating").locator(".cak-row-main").click()
    assert row(page, "rotating").get_by_test_id("allowed-ips").inner_text() == "127.0.0.1/32, ::1/128"
    row(page, "rotating").get_by_role("button", name="Rotate").click()
    dialog = page.get_by_role("dialog", name="Rotate this API key?")
    dialog.get_by_label("The old secret keeps working").select_option(label="1 hour")
    dialog.get_by_role("button", name="Rotate").click()
    shown = page.get_by_role("dialog", name="New secret: rotating")
    shown.wait_for()
    secret = shown.get_by_test_id("new-key").input_value()
    assert re.fullmatch(r"comfy_[0-9A-Za-z]{46}", secret) and secret != key["api_key"]
    toast(page, "success", "works until")
    assert use_key(host, secret) == [200] and use_key(host, key["api_key"]) == [200]  # in its grace hour
    shown.get_by_role("button", name="Done").click()
    no_dialog(page)
    assert secret_is_gone(page, secret)
    listed = host.get(f"/api/keys/{key['key_id']}").json()
    assert listed["previous_key_valid_until"] == pytest.approx(time.time() + 3600, abs=60)
    row(page, "rotating").locator(".cak-detail").filter(has_text="Works until").wait_for()

    # edit: never expires, and a wider range of addresses
    row(page, "rotating").get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit “rotating”")
    assert edit.get_by_label("Expires (optional)").input_value() != ""
    edit.get_by_role("button", name="Never expires").click()
    edit.get_by_label("Allowed addresses (optional)").fill("127.0.0.0/8\n::1")
    edit.get_by_role("button", name="Save").click()
    toast(page, "success", "rotating")
    server = host.get(f"/api/keys/{key['key_id']}").json()
    assert server["expires_at"] is None and server["allowed_ips"] == ["127.0.0.0/8", "::1/128"]
    assert row(page, "rotating").get_by_test_id("expiry").count() == 0

    # a server refusal lands on the field
    row(page, "rotating").get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit “rotating”")
    edit.get_by_label("Allowed addresses (optional)").fill("10.0.0.1/8")
    edit.get_by_role("button", name="Save").click()
    edit.locator(".cak-field-error", has_text="host bits").wait_for()
    edit.get_by_role("button", name="Cancel").click()
    assert host.get(f"/api/keys/{key['key_id']}").json()["allowed_ips"] == ["127.0.0.0/8", "::1/128"]

    # set an expiry again through the form
    row(page, "rotating").get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit “rotating”")
    edit.get_by_label("Expires (optional)").fill("2031-05-04T10:30")
    edit.get_by_role("button", name="Save").click()
    toast(page, "success", "rotating")
    expected = page.evaluate("new Date('2031-05-04T10:30').getTime() / 1000")
    assert host.get(f"/api/keys/{key['key_id']}").json()["expires_at"] == expected
    assert not seen["errors"], seen["errors"]


def test_a_key_holder_sees_its_scopes_expiry_and_addresses(context, make_host):
    host = make_host(env={"COMFYUI_API_AUTH": "require", "COMFYUI_API_AUTH_ADMIN_PASSWORD": PASSWORD})
    admin = _admin_session(host)
    mine = admin.post(host.url("/api/keys"), json={"name": "laptop", "scopes": ["read"], "expires_in_days": 3,
                                                   "allowed_ips": ["127.0.0.1"]}, timeout=10).json()
    page = context.new_page()
    seen = watch(page)
    page.goto(host.base + "/")
    page.click("#tab-key")
    page.fill("#secret", mine["api_key"])
    page.click("#submit")
    page.wait_for_url(host.base + "/")
    open_panel(page, host)
    own = page.get_by_test_id("own-usage")
    own.get_by_test_id("usage").wait_for()
    assert own.get_by_test_id("own-scope").inner_text().startswith("Read: ")
    assert re.match(r"Expires in (3 days|72 hours)", own.get_by_test_id("expires").inner_text())
    assert own.get_by_test_id("allowed-ips").inner_text() == "127.0.0.1/32"
    assert not seen["errors"], seen["errors"]
    assert requests.get(host.url("/api/usage"), headers={"X-API-Key": mine["api_key"]}, timeout=10).status_code == 200
