"""Each key's files are its own: route hooks on ``/view``, the uploads,
``POST /prompt`` and ``/object_info`` (rules in ``core/file_owners``, owners
kept by ``service/fileowners``).

For a principal held to its own work (``Principal.own_work_only``):
``/view`` of another key's file, an upload that would replace one, a mask
upload built on one, and a workflow that names one answer 403
``NOT_YOUR_FILE``; ``/object_info`` leaves others' uploads out of the
loaders' file lists. Uploads by everyone are recorded (a key's as its own;
anyone else's fresh write leaves the file without owner). Admins and the
anonymous of ``enable`` mode see everything as before.
"""

import asyncio
import json
import logging
import os
import uuid

from aiohttp import web

from ..core.file_owners import (INPUT, KINDS, WORK_KINDS, combo_options, foreign_file_in_prompt, hidden_options,
                                without_options)
from ..service.fileowners import comfy_folders
from .responses import error

log = logging.getLogger("comfyui_api_auth")

UPLOADS = ("/upload/image", "/upload/mask")
# Newer ComfyUI's asset routes that send a file's bytes (only with --enable-assets).
ASSET_CONTENT = ("/assets/{id}/content", "/assets/{id}/thumbnail")
CATALOGS = ("/object_info", "/object_info/{node_class}")
CATALOG_CACHE_KEYS = 256  # keys whose filtered /object_info is kept, per route


def not_your_file(message: str, **extra) -> web.Response:
    return error(403, "NOT_YOUR_FILE", message, **extra)


class OwnFiles:
    def __init__(self, runtime, folders=comfy_folders):
        self.store = runtime.files  # FileOwnerStore
        self.job_watch = runtime.job_watch
        self.folders = folders      # () -> Folders
        self.catalogs = {path: CatalogFilter(self) for path in CATALOGS}

    def wrapper(self, path, method):
        """A route hook (see route_hooks)."""
        if method in ("GET", "HEAD") and path == "/view":
            return self.view
        if method == "POST" and path in UPLOADS:
            return self.upload
        if method == "POST" and path == "/prompt":
            return self.prompt
        if method == "GET" and path in self.catalogs:
            return self.catalogs[path].run
        if method in ("GET", "HEAD") and path in ASSET_CONTENT:
            return self.asset_content
        return None

    def may_read(self, key_pk, ref) -> bool:
        owners = self.store.owners
        if owners.may_read(key_pk, ref):
            return True
        if ref[0] in WORK_KINDS:
            # Perhaps made by one of the key's prompts that finished since the job
            # watcher last looked (it polls every second): look now.
            self.job_watch.learn_finished_of(key_pk)
            return owners.may_read(key_pk, ref)
        return False

    # ---- /view -----------------------------------------------------------------------------------

    async def view(self, request, handler, principal, now):
        key_pk = principal.own_work_only
        if key_pk is not None:
            query = request.rel_url.query
            filename = query.get("filename")
            if filename is not None and filename[:7].lower() == "blake3:":
                # Newer ComfyUI serves an indexed file by its content hash (and its
                # asset list names the hashes): whose file that is cannot be told here.
                return not_your_file("a file named by its hash cannot be checked; name it as /view does")
            if filename is not None:
                # The file ComfyUI's view_image would open (None where it opens none).
                ref = self.folders().view_ref(filename, query.get("type", "output"), query.get("subfolder"))
                if ref is not None and not self.may_read(key_pk, ref):
                    return not_your_file("this file is not one of this key's files")
        return await handler(request)

    # ---- newer ComfyUI's assets ------------------------------------------------------------------

    async def asset_content(self, request, handler, principal, now):
        """``/api/assets/{id}/content``: the file behind an asset id, found the way
        the handler finds it (ComfyUI's asset service), is held to the same rules
        as ``/view``. Where that service cannot say (another ComfyUI version), a
        key held to its own work is refused rather than served blind."""
        key_pk = principal.own_work_only
        if key_pk is not None:
            path = asset_file(request.match_info.get("id", ""))
            if path is UNKNOWN:
                return not_your_file("the package cannot tell whose file this asset is")
            ref = self.folders().ref_of(path) if path else None
            if ref is not None and not self.may_read(key_pk, ref):
                return not_your_file("this asset's file is not one of this key's files")
        return await handler(request)

    # ---- uploads ---------------------------------------------------------------------------------

    async def upload(self, request, handler, principal, now):
        post = await request.post()  # aiohttp keeps it: the handler reads the same form
        image = post.get("image")
        kind = post.get("type")
        kind = INPUT if kind is None else kind
        subfolder = post.get("subfolder", "")
        if kind not in KINDS or not isinstance(subfolder, str) or not isinstance(image, web.FileField):
            return await handler(request)  # ComfyUI refuses (or fails on) these itself
        folders = self.folders()
        overwrite = post.get("overwrite") in ("true", "1")
        target = folders.ref(kind, os.path.normpath(subfolder), image.filename or "")
        existed = target is not None and os.path.exists(folders.path(target))
        key_pk = principal.own_work_only
        if key_pk is not None:
            refusal = self._refuse_upload(key_pk, folders, target, existed, overwrite, post, request.path)
            if refusal is not None:
                return refusal
        response = await handler(request)
        if response.status == 200:
            await self._record_upload(response, folders, principal, target, existed and not overwrite)
        return response

    def _refuse_upload(self, key_pk, folders, target, existed, overwrite, post, path):
        owners = self.store.owners
        if overwrite and target is not None and not owners.may_replace(key_pk, target, existed):
            return not_your_file("overwrite would replace a file this key did not upload", file=target[1],
                                 type=target[0])
        if path.endswith("/upload/mask"):
            # The mask is merged into the image original_ref names: that image is read.
            try:
                original = json.loads(post.get("original_ref"))
                ref = folders.view_ref(original["filename"], original.get("type", "output"),
                                       original.get("subfolder", ""))
            except (TypeError, ValueError, KeyError, AttributeError):
                return None  # ComfyUI answers this one itself
            if ref is not None and not self.may_read(key_pk, ref):
                return not_your_file("original_ref names a file that is not one of this key's files")
        return None

    async def _record_upload(self, response, folders, principal, target, may_be_duplicate):
        try:
            answer = json.loads(response.body)
            ref = folders.ref(answer["type"], os.path.normpath(answer.get("subfolder") or ""), answer["name"])
        except (TypeError, ValueError, KeyError, AttributeError):
            return
        if ref is None:
            return
        key_pk = principal.key.pk if principal.key is not None else None
        if may_be_duplicate and ref == target:
            # Same name without overwrite: ComfyUI found the same bytes there and wrote nothing.
            self.store.shared(ref, key_pk)
        else:
            self.store.written(ref, key_pk)
        await self.store.persist()

    # ---- POST /prompt ----------------------------------------------------------------------------

    async def prompt(self, request, handler, principal, now):
        key_pk = principal.own_work_only
        if key_pk is not None:
            try:
                body = await request.json()
            except (ValueError, UnicodeDecodeError):
                body = None  # ComfyUI answers a body it cannot read
            prompt = body.get("prompt") if isinstance(body, dict) else None
            found = foreign_file_in_prompt(prompt, key_pk, self.folders(), self.store.owners)
            if found is not None:
                # Perhaps the output of one of its own prompts that just finished: look, then again.
                self.job_watch.learn_finished_of(key_pk)
                found = foreign_file_in_prompt(prompt, key_pk, self.folders(), self.store.owners)
            if found is not None:
                node_id, input_name, value = found
                return not_your_file(f"node {node_id} input '{input_name}' names a file that is not one of this "
                                     f"key's files", node_id=node_id, input=input_name, file=value)
        return await handler(request)


class CatalogFilter:
    """``/object_info`` for a key: the loaders' file lists without others' uploads.

    ComfyUI builds the answer afresh for every request; it is parsed once per
    distinct answer, and each key's filtered answer is kept until the answer
    or the input files' owners change. A key with nothing to hide gets
    ComfyUI's answer untouched; a filtered answer re-serializes only the nodes
    that lose an option (the others' JSON is kept per distinct answer)."""

    def __init__(self, own_files):
        self.own_files = own_files
        self.body = None        # the last answer seen, as ComfyUI sent it
        self.info = None        # ... parsed
        self.options = frozenset()  # ... its combo options
        self.annotated = ()     # ... those that name a file with "[output]" and the like
        self.node_json = None   # ... each node's JSON, made when a first key needs a filtered copy
        self.filtered = {}      # key pk -> (owners' version, body or None for "as it is")

    async def run(self, request, handler, principal, now):
        response = await handler(request)
        key_pk = principal.own_work_only
        if key_pk is None or response.status != 200:
            return response
        body = getattr(response, "body", None)
        if not isinstance(body, bytes):
            return response
        filtered = self.filter(key_pk, body)
        if filtered is not None:
            response.body = filtered
        return response

    def filter(self, key_pk, body: bytes):
        if body != self.body:
            try:
                info = json.loads(body)
            except ValueError:
                return None
            self.body, self.info, self.filtered, self.node_json = body, info, {}, None
            self.options = frozenset(combo_options(info))
            self.annotated = tuple(option for option in self.options if option.endswith("]"))
        owners = self.own_files.store.owners
        version = owners.version if self.annotated else owners.input_version
        kept = self.filtered.get(key_pk)
        if kept is not None and kept[0] == version:
            return kept[1]
        hidden = hidden_options(self.annotated, key_pk, self.own_files.folders(), owners, ())
        hidden.update(self.options.intersection(owners.hidden_inputs(key_pk)))
        result = self._without(hidden) if hidden else None
        if len(self.filtered) >= CATALOG_CACHE_KEYS:
            self.filtered.clear()
        self.filtered[key_pk] = (version, result)
        return result

    def _without(self, hidden) -> bytes:
        changed = without_options(self.info, hidden)
        if self.node_json is None:
            self.node_json = {name: f"{json.dumps(name)}: {json.dumps(node)}" for name, node in self.info.items()}
        parts = (self.node_json[name] if node is self.info[name] else f"{json.dumps(name)}: {json.dumps(node)}"
                 for name, node in changed.items())
        return ("{" + ", ".join(parts) + "}").encode()


UNKNOWN = object()


def asset_file(asset_id: str):
    """The absolute path of an asset's file, None when there is no such asset
    (ComfyUI answers 404), or UNKNOWN when this ComfyUI's asset service cannot
    be asked (the module is young and says it will change)."""
    try:
        from app.assets.services import resolve_asset_for_download  # ComfyUI with assets (not 0.3.64)
    except ImportError:
        return UNKNOWN
    try:
        return resolve_asset_for_download(reference_id=str(uuid.UUID(asset_id))).abs_path
    except (ValueError, FileNotFoundError):
        return None
    except Exception:  # noqa: BLE001 - a changed signature or result: do not serve blind
        return UNKNOWN


def record_executed(runtime, prompt_server):
    """Learn a node's files from its ``executed`` message before the client gets
    it (so the client's /view of them right after is answered): the message goes
    out through ``send_sync``, from the worker thread, onto the loop."""
    original = prompt_server.send_sync

    def learn(prompt_id, output):
        try:
            runtime.files.on_executed(prompt_id, output)
        except Exception as failure:  # noqa: BLE001 - never break ComfyUI's messages
            log.warning("[api-auth] could not record a node's files: %s: %s", type(failure).__name__, failure)

    def send_sync(event, data, sid=None):
        if event == "executed" and isinstance(data, dict):
            loop = getattr(prompt_server, "loop", None) or asyncio.get_event_loop()
            loop.call_soon_threadsafe(learn, data.get("prompt_id"), data.get("output"))
        return original(event, data, sid)

    prompt_server.send_sync = send_sync
