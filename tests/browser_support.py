"""Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by
Python Playwright (no `playwright install`).

Outside CI a missing Chromium or Playwright skips the test with the reason; in
CI (env CI set) it fails, so browser tests can never be skipped silently there.
"""

import os
from contextlib import contextmanager

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
ARTIFACTS = os.path.join(REPO, "tests", "artifacts")


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; browser tests must run in CI", pytrace=False)
    pytest.skip(reason)


@contextmanager
def launch_chromium(**kwargs):
    """Yield a Playwright Browser on Debian's Chromium, closed afterwards."""
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Python Playwright is missing (pip install 'playwright>=1.45,<2')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, **kwargs)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page_or_locator, name: str) -> str:
    """Save a PNG under tests/artifacts/ (gitignored) and return its path."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    page_or_locator.screenshot(path=path)
    return path
