#!/usr/bin/env python3
"""What one key's filtered history costs: GET /api/history?max_items=50.

    python3 bench/history.py                  # 10,000 history items from 20 keys, 5 rounds
    python3 bench/history.py --items 2000 --rounds 3 --requests 100   # quicker

Two stand-in servers hold the same history: A is plain ComfyUI (no package),
B has the package (require mode) and 20 keys. Each server is filled with
``--items`` prompts (EmptyImage -> ImageBlur -> SaveImage, with the
``extra_data`` the frontend sends: a client id and the workflow in
``extra_pnginfo``), queued round-robin by the 20 keys on B (without a key on
A), run to the end. Then, in interleaved rounds, ``--requests`` sequential
keep-alive requests each of

  A        GET /api/history?max_items=50   (plain ComfyUI: the newest 50 of everyone's)
  B key    the same with one key's Bearer  (the newest 50 of that key's own)
  B admin  the same with an admin key      (everyone's newest 50, secrets scrubbed)

and the server's CPU time per request (all threads, /proc/<pid>/stat) is
compared: the medians over the rounds, and B/A. The target (issue 14): B key
at most 2x A. Pinned like bench.py (server CPU 0, client CPU 1).
"""

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import fill
from measure import median, proc_cpu_seconds
from server import Server, cpu_plan

PATH = "/api/history?max_items=50"
KEYS = 20
TARGET = 2.0


def frontend_workflow(tag):
    """The frontend's workflow JSON for the three nodes (what extra_pnginfo carries), ~2 KB."""
    def node(node_id, kind, inputs, outputs, widgets):
        return {"id": node_id, "type": kind, "pos": [100 * node_id, 100], "size": [315, 106], "flags": {},
                "order": node_id - 1, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": kind, "cnr_id": "comfy-core", "ver": "0.3.64"},
                "widgets_values": widgets}
    return {"id": tag, "revision": 0, "last_node_id": 3, "last_link_id": 2,
            "nodes": [node(1, "EmptyImage", [], [{"name": "IMAGE", "type": "IMAGE", "links": [1]}], [8, 8, 1, 0]),
                      node(2, "ImageBlur", [{"name": "image", "type": "IMAGE", "link": 1}],
                           [{"name": "IMAGE", "type": "IMAGE", "links": [2]}], [1, 1.0]),
                      node(3, "SaveImage", [{"name": "images", "type": "IMAGE", "link": 2}], [], [tag])],
            "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]], "groups": [], "config": {},
            "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}, "frontendVersion": "1.27.10"}, "version": 0.4}


def prompt_body(tag):
    return {"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                       "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}},
                       "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"{tag}/img"}}},
            "client_id": f"client-{tag}",
            "extra_data": {"extra_pnginfo": {"workflow": frontend_workflow(tag)}}}


def request(connection, method, path, headers=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = dict(headers or {})
    if data is not None:
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {payload[:300]!r}")
    return payload


def fill_history(server, items, key_headers):
    """``items`` prompts queued from 4 threads, round-robin by the keys ({}: no key), the n-th the same
    prompt on both servers (one of 20, a folder each: ComfyUI's SaveImage lists its folder on every
    save); wait until all have run."""
    errors = []

    def worker(start):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            for n in range(start, items, 4):
                headers = key_headers[n % len(key_headers)]
                request(connection, "POST", "/api/prompt", headers, prompt_body(f"k{n % KEYS}"))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(start,)) for start in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        while json.loads(request(connection, "GET", "/api/prompt", key_headers[0]))["exec_info"]["queue_remaining"]:
            time.sleep(0.5)
    finally:
        connection.close()


def wait_idle(server, timeout=120):
    """Until the server spends under 2% of a core (the package writes its job rows after a fill)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        before = proc_cpu_seconds(server.pid)
        time.sleep(1.0)
        if proc_cpu_seconds(server.pid) - before < 0.02:
            return
    print(f"{server.label}: still busy after {timeout} s; measuring anyway", flush=True)


def cpu_per_request(server, headers, count):
    """Server CPU microseconds per request over ``count`` sequential keep-alive requests."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        request(connection, "GET", PATH, headers)  # warm
        before = proc_cpu_seconds(server.pid)
        for _ in range(count):
            request(connection, "GET", PATH, headers)
        return (proc_cpu_seconds(server.pid) - before) / count * 1e6
    finally:
        connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--package", help="benchmark the package in another checkout")
    options = parser.parse_args()
    if options.package:
        fill.use_package(options.package)
    server_cpus, client_cpus, pin_note = cpu_plan(not options.no_pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    tmp = tempfile.mkdtemp(prefix="comfy_history_")
    plain = Server("A", os.path.join(tmp, "A"), package=False, cpus=server_cpus)
    package = Server("B", os.path.join(tmp, "B"), package=True, cpus=server_cpus)
    try:
        os.makedirs(os.path.dirname(package.sqlite_url[len("sqlite:///"):]), exist_ok=True)
        repository, key_format = fill.package_module("storage.repository"), fill.package_module("core.keys")
        database = fill.open_db(package.sqlite_url)
        plaintexts = []
        for n, scopes in [(n, ["generate"]) for n in range(KEYS)] + [(KEYS, ["admin"])]:
            made = fill.new_key(key_format)
            repository.create_key(database, **made.stored, name=f"history{n}", rate_limit=1_000_000_000,
                                  metadata={}, scopes=scopes, now=time.time())
            plaintexts.append(made.plaintext)
        database.close()
        key_headers = [{"Authorization": f"Bearer {plaintext}"} for plaintext in plaintexts[:KEYS]]
        admin_headers = {"Authorization": f"Bearer {plaintexts[KEYS]}"}
        print(f"{pin_note}; filling {options.items:,} history items on each server...", flush=True)
        started = time.time()
        plain.start("/api/features")
        fill_history(plain, options.items, [{}])
        package.start("/api/features")
        fill_history(package, options.items, key_headers)
        wait_idle(plain)
        wait_idle(package)
        print(f"filled in {time.time() - started:.0f} s", flush=True)
        one_key = key_headers[KEYS // 2]
        sizes = {}
        for label, server, headers in (("A", plain, {}), ("B key", package, one_key), ("B admin", package, admin_headers)):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            payload = request(connection, "GET", PATH, headers)
            answer = json.loads(payload)
            connection.close()
            sizes[label] = len(payload)
            if len(answer) != min(50, options.items // (KEYS if label == "B key" else 1)):
                raise RuntimeError(f"{label}: {len(answer)} items answered, not 50")
        print("answer sizes: " + ", ".join(f"{label} {size:,} bytes" for label, size in sizes.items()), flush=True)
        runs = {"A": [], "B key": [], "B admin": []}
        for round_number in range(options.rounds):
            order = [("A", plain, {}), ("B key", package, one_key), ("B admin", package, admin_headers)]
            order = order[round_number % 3:] + order[:round_number % 3]
            for label, server, headers in order:
                runs[label].append(cpu_per_request(server, headers, options.requests))
            print(f"round {round_number + 1}: " + ", ".join(f"{label} {runs[label][-1]:.0f} us" for label in runs),
                  flush=True)
        a, key, admin = median(runs["A"]), median(runs["B key"]), median(runs["B admin"])
        print(f"\nGET {PATH}, {options.items:,} history items from {KEYS} keys, server CPU per request "
              f"(median of {options.rounds} rounds of {options.requests}):")
        print(f"  A       plain ComfyUI, everyone's newest 50:  {a:8.0f} us")
        print(f"  B key   one key's own newest 50:             {key:8.0f} us   B/A {key / a:.2f}  "
              f"({'PASS' if key / a <= TARGET else 'MISS'}: at most {TARGET:.0f}x)")
        print(f"  B admin everyone's newest 50, scrubbed:      {admin:8.0f} us   B/A {admin / a:.2f}")
    finally:
        plain.stop()
        package.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
