"""Record the HTTP calls a ComfyUI page makes while it loads.

Used to take tests/fixtures/page_load_calls_*.json from a real ComfyUI
(started by hand, e.g. /work/realcomfy/start.sh PORT [--front-end-root DIR]):

    .venv/bin/python tests/fingerprint/page_load_recorder.py \
        http://127.0.0.1:PORT/ LABEL OUT.json [SECONDS]

Headless Chromium opens the page and every same-origin request of the first
SECONDS (default 20) is written down as method + path (query values are
dropped; the names of the query parameters are kept, because a few routes
change behaviour on them, e.g. ComfyUI-Manager's ``GET ...?value=``). Not a
test: it needs a running ComfyUI and is run when the fixtures are re-taken.
"""

import json
import sys
import time
from urllib.parse import parse_qsl, urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--headless"]


def record(url: str, seconds: float) -> list[dict]:
    from playwright.sync_api import sync_playwright

    origin = urlsplit(url)[:2]
    seen: dict[tuple, dict] = {}

    def note(method: str, raw_url: str, status=None):
        parts = urlsplit(raw_url)
        if (parts.scheme.replace("ws", "http"), parts.netloc) != (origin[0], origin[1]):
            return
        keys = sorted({name for name, _ in parse_qsl(parts.query, keep_blank_values=True)})
        key = (method, parts.path, tuple(keys))
        entry = seen.setdefault(key, {"method": method, "path": parts.path,
                                      "query_keys": keys, "statuses": []})
        if status is not None and status not in entry["statuses"]:
            entry["statuses"].append(status)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("response", lambda r: note(r.request.method, r.url, r.status))
        page.on("requestfailed", lambda r: note(r.method, r.url, "failed"))
        page.on("websocket", lambda ws: note("GET", ws.url, "websocket"))
        page.goto(url, wait_until="domcontentloaded")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            page.wait_for_timeout(500)
        browser.close()
    return sorted(seen.values(), key=lambda e: (e["path"], e["method"], e["query_keys"]))


def main(argv):
    url, label, out = argv[1], argv[2], argv[3]
    seconds = float(argv[4]) if len(argv) > 4 else 20.0
    calls = record(url, seconds)
    head = json.dumps({"taken_from": label, "seconds": seconds}, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(call) for call in calls)  # one call a line
    with open(out, "w") as f:
        f.write(head + ',\n "calls": [\n' + body + "\n ]\n}\n")
    print(f"{len(calls)} distinct calls -> {out}")


if __name__ == "__main__":
    main(sys.argv)
