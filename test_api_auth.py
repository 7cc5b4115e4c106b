"""Create a test API key on a running ComfyUI and use it once.

    python3 test_api_auth.py            # against http://localhost:8188
    COMFYUI_URL=http://127.0.0.1:8199 python3 test_api_auth.py

Run it on the machine ComfyUI runs on (local requests are the admin), or set
COMFYUI_ADMIN_KEY to an admin key. Uses only the standard library.
"""

import json
import os
import sys
import urllib.error
import urllib.request

BASE = os.environ.get("COMFYUI_URL", "http://localhost:8188").rstrip("/")


def call(method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def main() -> int:
    admin = {"Authorization": "Bearer " + os.environ["COMFYUI_ADMIN_KEY"]} if os.environ.get("COMFYUI_ADMIN_KEY") else {}
    status, created = call("POST", "/api/keys", {"name": "test_api_auth.py", "rate_limit": 100}, admin)
    if status != 200:
        print(f"❌ Could not create a key: {status} {created.get('error', created)}")
        return 1
    print("✅ API key created!")
    print(f"Key ID:  {created['key_id']}")
    print(f"API Key: {created['api_key']}")
    print("⚠️  Save this key - it won't be shown again!")
    status, usage = call("GET", "/api/usage", headers={"X-API-Key": created["api_key"]})
    if status != 200:
        print(f"❌ The new key was refused: {status} {usage.get('error', usage)}")
        return 1
    print(f"✅ The key works: {usage['key_name']}, limit {usage['rate_limit']}/hour")
    return 0


if __name__ == "__main__":
    sys.exit(main())
