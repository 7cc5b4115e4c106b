"""Which scope each HTTP route of a ComfyUI server needs: one table.

Pure data and two small look-ups; nothing here knows aiohttp. The policy
(``core.policy.AccessPolicy.classify``, once per route, cached by the
middleware) takes the route template aiohttp matched
(``resource.canonical``), strips ComfyUI's ``/api`` twin prefix
(``policy.canonical_path``) and asks :func:`lookup`.

Classes, from least to most privilege:

- ``public``: anyone, in every mode (this package's sign-in routes).
- ``read``: the catalog (node and model lists, settings, page files), the
  caller's own usage and jobs, the status socket. No ``/prompt``, no uploads.
- ``generate``: read, plus queueing workflows, uploading inputs and fetching
  results.
- ``admin``: operating the server: ComfyUI-Manager's changes, ``/internal``,
  ``/free``, creating users, writes to shared files and settings, model
  downloads, restarts, key management.

Notes on a rule say which later layer narrows it further:

- ``own_work``: the isolation layer limits a non-admin caller to its own
  prompts, jobs and files (queue, history, interrupt, view, upload, jobs).
- ``per_user``: isolated by the user-directory layer (ComfyUI's multi-user
  mechanism, one user per key): the caller reads and writes only its own
  user folder.
- ``key_holder``: answers about the caller's own key, so it needs a key.

Keys are ``(template, method)``; the template is written exactly as aiohttp
reports it (``{name}`` without the regular expression a route may carry) and
without the ``/api`` twin prefix; ``method`` is an HTTP method or ``ANY``. A
``HEAD`` request uses the ``GET`` rule (aiohttp runs the GET handler for it).
A route that is not in the table is unknown: :func:`required_class` answers
``None`` and the caller treats it as ``admin`` in ``require`` mode.

There are no suffix rules (``*.js`` is not public). Prefix rules exist only
for static mounts (page files) and apply only when the caller says the
matched resource is a static one, so a custom node's dynamic route under
``/extensions/`` does not inherit ``read``.
"""

from dataclasses import dataclass

PUBLIC = "public"
READ = "read"
GENERATE = "generate"
ADMIN = "admin"
CLASSES = (PUBLIC, READ, GENERATE, ADMIN)  # least privilege first

OWN_WORK = "own_work"
PER_USER = "per_user"
KEY_HOLDER = "key_holder"
NOTES = (OWN_WORK, PER_USER, KEY_HOLDER)

ANY = None  # any HTTP method


@dataclass(frozen=True)
class Rule:
    route_class: str
    notes: frozenset = frozenset()


@dataclass(frozen=True)
class QueryRule:
    """A GET that reads, or changes when ``param`` is in the query string
    (ComfyUI-Manager's ``GET ...?value=``): the change needs ``with_param``,
    the read ``without``. Presence counts, as in Manager (``?value=`` too)."""
    param: str
    with_param: str
    without: str
    notes: frozenset = frozenset()

    def route_class(self, query) -> str:
        return self.with_param if self.param in query else self.without


def rule(route_class: str, *notes: str) -> Rule:
    return Rule(route_class, frozenset(notes))


def query_rule(param: str, with_param: str, without: str, *notes: str) -> QueryRule:
    return QueryRule(param, with_param, without, frozenset(notes))


def _twins_of_api_routes(entries: dict) -> dict:
    """Routes a core module registers on ``PromptServer.routes`` already
    starting with ``/api`` (``/api/jobs``): ComfyUI twins them again, so
    aiohttp reports both ``/api/jobs`` and ``/api/api/jobs``; stripped of
    one ``/api`` that is ``/jobs`` and ``/api/jobs``. ``entries`` are keyed
    by the stripped form."""
    twins = {("/api" + path, method): value for (path, method), value in entries.items()}
    return {**entries, **twins}


_MANAGER_CHANGE = query_rule("value", ADMIN, READ)

# --- ComfyUI core 0.3.64 (server.py, app/*.py, api_server/routes/internal/internal_routes.py, read at a125cd84) ---
COMFYUI_0_3_64 = {
    ("/", "GET"): rule(READ),
    ("/ws", "GET"): rule(READ, OWN_WORK),
    ("/embeddings", "GET"): rule(READ),
    ("/models", "GET"): rule(READ),
    ("/models/{folder}", "GET"): rule(READ),
    ("/extensions", "GET"): rule(READ),
    ("/object_info", "GET"): rule(READ),
    ("/object_info/{node_class}", "GET"): rule(READ),
    ("/view_metadata/{folder_name}", "GET"): rule(READ),
    ("/system_stats", "GET"): rule(READ),
    ("/features", "GET"): rule(READ),
    ("/i18n", "GET"): rule(READ),
    ("/workflow_templates", "GET"): rule(READ),
    ("/experiment/models", "GET"): rule(READ),
    ("/experiment/models/{folder}", "GET"): rule(READ),
    ("/experiment/models/preview/{folder}/{path_index}/{filename}", "GET"): rule(READ),
    # Work. GET /queue and GET /history are the caller's own jobs (a read
    # key's page asks for them at load, frontend 1.27.10); GET /prompt only
    # counts the queue but the issue keeps /prompt away from read keys.
    ("/prompt", "GET"): rule(GENERATE, OWN_WORK),
    ("/prompt", "POST"): rule(GENERATE, OWN_WORK),
    ("/queue", "GET"): rule(READ, OWN_WORK),
    ("/queue", "POST"): rule(GENERATE, OWN_WORK),
    ("/history", "GET"): rule(READ, OWN_WORK),
    ("/history", "POST"): rule(GENERATE, OWN_WORK),
    ("/history/{prompt_id}", "GET"): rule(READ, OWN_WORK),
    ("/interrupt", "POST"): rule(GENERATE, OWN_WORK),
    ("/upload/image", "POST"): rule(GENERATE, OWN_WORK),
    ("/upload/mask", "POST"): rule(GENERATE, OWN_WORK),
    ("/view", "GET"): rule(GENERATE, OWN_WORK),
    # Per-user data: one user folder per key once the user-directory layer is in.
    ("/users", "GET"): rule(READ, PER_USER),
    ("/users", "POST"): rule(ADMIN),  # creates a user
    ("/settings", "GET"): rule(READ, PER_USER),
    # Its own settings, in its own user folder: the frontends save a few as
    # every page loads (Comfy.InstalledVersion...), so a read key may too.
    ("/settings", "POST"): rule(READ, PER_USER),
    ("/settings/{id}", "GET"): rule(READ, PER_USER),
    ("/settings/{id}", "POST"): rule(READ, PER_USER),
    ("/userdata", "GET"): rule(READ, PER_USER),
    ("/v2/userdata", "GET"): rule(READ, PER_USER),
    ("/userdata/{file}", "GET"): rule(READ, PER_USER),
    ("/userdata/{file}", "POST"): rule(GENERATE, PER_USER),
    ("/userdata/{file}", "DELETE"): rule(GENERATE, PER_USER),
    ("/userdata/{file}/move/{dest}", "POST"): rule(GENERATE, PER_USER),
    # Operator.
    ("/free", "POST"): rule(ADMIN),
    ("/internal/logs", "GET"): rule(ADMIN),
    ("/internal/logs/raw", "GET"): rule(ADMIN),
    ("/internal/logs/subscribe", "PATCH"): rule(ADMIN),
    # Model folder names (the catalog) to the server's paths: frontends ask at
    # load when a workflow names a missing model. Keys get the names only
    # (server_routes/folder_names.py); the paths stay the operator's.
    ("/internal/folder_paths", "GET"): rule(READ),
    ("/internal/files/{directory_type}", "GET"): rule(ADMIN),
}

# --- Newer ComfyUI (Comfy-Org/ComfyUI as indexed: server.py at 002c3fb9, app/*, comfy_execution/jobs.py; 0.38.x) ---
# Some of app/ (model_download.py, asset_export.py, assets/downloads/) may be
# unmerged branches: an entry for a route that is never registered is inert.
COMFYUI_NEWER = {
    ("/global_subgraphs", "GET"): rule(READ),
    ("/global_subgraphs/{id}", "GET"): rule(READ),
    ("/node_replacements", "GET"): rule(READ),
    ("/workflow_templates/{module_name}/{filename}", "GET"): rule(READ),
    # Registered with app.router.add_get (no twin): a newer templates package's handler.
    ("/templates/{path}", "GET"): rule(READ),
    # Registered as "/api/jobs..." on the twinned table (see _twins_of_api_routes).
    **_twins_of_api_routes({
        ("/jobs", "GET"): rule(READ, OWN_WORK),
        ("/jobs/{job_id}", "GET"): rule(READ, OWN_WORK),
        ("/jobs/{job_id}/cancel", "POST"): rule(GENERATE, OWN_WORK),
        ("/jobs/cancel", "POST"): rule(GENERATE, OWN_WORK),
    }),
    # Assets (app/assets/api/routes.py, added to the app as "/api/...", no twin).
    # The asset records are shared by every user (not owner-scoped): reads
    # are catalog, content is like /view, metadata edits are operator.
    ("/assets", "GET"): rule(READ),
    ("/assets", "POST"): rule(GENERATE, OWN_WORK),  # upload, like /upload/image
    ("/assets/from-hash", "POST"): rule(GENERATE, OWN_WORK),
    ("/assets/hash/{hash}", "HEAD"): rule(READ),
    ("/assets/{id}", "GET"): rule(READ),
    ("/assets/{id}", "PUT"): rule(ADMIN),
    ("/assets/{id}", "DELETE"): rule(ADMIN),
    ("/assets/{id}/content", "GET"): rule(GENERATE, OWN_WORK),
    ("/assets/{id}/thumbnail", "GET"): rule(GENERATE, OWN_WORK),
    ("/assets/{id}/tags", "POST"): rule(ADMIN),
    ("/assets/{id}/tags", "DELETE"): rule(ADMIN),
    ("/assets/tags/refine", "GET"): rule(READ),
    ("/tags", "GET"): rule(READ),
    ("/assets/seed", "POST"): rule(ADMIN),
    ("/assets/seed/status", "GET"): rule(READ),
    ("/assets/seed/cancel", "POST"): rule(ADMIN),
    ("/assets/prune", "POST"): rule(ADMIN),
    # Asset export (app/asset_export.py): zips the caller's own job outputs.
    ("/assets/export", "POST"): rule(GENERATE, OWN_WORK),
    ("/assets/exports/{exportName}", "GET"): rule(GENERATE, OWN_WORK),
    # Model downloads (app/assets/downloads/routes.py, app/model_download.py).
    ("/assets/download", "POST"): rule(ADMIN),
    ("/tasks/{task_id}", "GET"): rule(READ),
    ("/tasks/{task_id}", "DELETE"): rule(ADMIN),
    ("/models/download", "POST"): rule(ADMIN),
    ("/models/download/{batch_id}", "GET"): rule(READ),
}

# --- ComfyUI-Manager 3.31.9 (custom node; glob/manager_server.py, glob/share_3rdparty.py, read at 908a1009) ---
MANAGER_3_31_9 = {
    ("/manager/version", "GET"): rule(READ),
    ("/manager/notice", "GET"): rule(READ),  # fetches a page from github.com each call
    ("/manager/queue/status", "GET"): rule(READ),
    ("/manager/component/loads", "POST"): rule(READ),  # a read by POST; page load
    ("/customnode/getmappings", "GET"): rule(READ),
    ("/customnode/installed", "GET"): rule(READ),
    ("/customnode/getlist", "GET"): rule(READ),
    ("/customnode/alternatives", "GET"): rule(READ),
    ("/customnode/versions/{node_name}", "GET"): rule(READ),
    ("/customnode/disabled_versions/{node_name}", "GET"): rule(READ),
    ("/customnode/import_fail_info", "POST"): rule(READ),  # a read by POST
    ("/externalmodel/getlist", "GET"): rule(READ),
    ("/snapshot/getlist", "GET"): rule(READ),
    ("/snapshot/get_current", "GET"): rule(READ),
    ("/comfyui_manager/comfyui_versions", "GET"): rule(READ),
    # GET reads, GET ?value= writes Manager's config.
    ("/manager/preview_method", "GET"): _MANAGER_CHANGE,
    ("/manager/db_mode", "GET"): _MANAGER_CHANGE,
    ("/manager/policy/component", "GET"): _MANAGER_CHANGE,
    ("/manager/policy/update", "GET"): _MANAGER_CHANGE,
    ("/manager/channel_url_list", "GET"): _MANAGER_CHANGE,
    ("/manager/share_option", "GET"): _MANAGER_CHANGE,
    # Changes (several of them GETs).
    ("/customnode/fetch_updates", "GET"): rule(ADMIN),  # git fetch in every node pack
    ("/customnode/install/git_url", "POST"): rule(ADMIN),
    ("/customnode/install/pip", "POST"): rule(ADMIN),
    ("/manager/queue/install", "POST"): rule(ADMIN),
    ("/manager/queue/reinstall", "POST"): rule(ADMIN),
    ("/manager/queue/uninstall", "POST"): rule(ADMIN),
    ("/manager/queue/update", "POST"): rule(ADMIN),
    ("/manager/queue/fix", "POST"): rule(ADMIN),
    ("/manager/queue/disable", "POST"): rule(ADMIN),
    ("/manager/queue/install_model", "POST"): rule(ADMIN),
    ("/manager/queue/update_all", "GET"): rule(ADMIN),
    ("/manager/queue/update_comfyui", "GET"): rule(ADMIN),
    ("/manager/queue/reset", "GET"): rule(ADMIN),
    ("/manager/queue/start", "GET"): rule(ADMIN),
    ("/comfyui_manager/comfyui_switch_version", "GET"): rule(ADMIN),
    ("/snapshot/save", "GET"): rule(ADMIN),
    ("/snapshot/remove", "GET"): rule(ADMIN),
    ("/snapshot/restore", "GET"): rule(ADMIN),
    ("/manager/reboot", "GET"): rule(ADMIN),
    ("/manager/component/save", "POST"): rule(ADMIN),
    # Sharing: the GETs answer the operator's stored credentials, the POSTs
    # store them or the last shared workflow in Manager's shared folder.
    ("/manager/get_openart_auth", "GET"): rule(ADMIN),
    ("/manager/set_openart_auth", "POST"): rule(ADMIN),
    ("/manager/get_matrix_auth", "GET"): rule(ADMIN),
    ("/manager/get_comfyworkflows_auth", "GET"): rule(ADMIN),
    ("/manager/youml/settings", "GET"): rule(ADMIN),
    ("/manager/youml/settings", "POST"): rule(ADMIN),
    ("/manager/get_esheep_workflow_and_images", "GET"): rule(ADMIN),
    ("/manager/set_esheep_workflow_and_images", "POST"): rule(ADMIN),
    ("/manager/share", "POST"): rule(ADMIN),
}

# --- comfyui-manager 4.3 (PyPI package newer ComfyUI loads with --enable-manager; glob/ and legacy/) ---
# 4.x moved its changes to POST; only share_option still writes on GET ?value=.
MANAGER_4_3 = {
    ("/v2/manager/version", "GET"): rule(READ),
    ("/v2/manager/notice", "GET"): rule(READ),  # legacy UI only
    ("/v2/manager/is_legacy_manager_ui", "GET"): rule(READ),
    ("/v2/manager/queue/status", "GET"): rule(READ),
    ("/v2/manager/queue/history", "GET"): rule(READ),
    ("/v2/manager/queue/history_list", "GET"): rule(READ),
    ("/v2/manager/db_mode", "GET"): rule(READ),
    ("/v2/manager/policy/update", "GET"): rule(READ),
    ("/v2/manager/channel_url_list", "GET"): rule(READ),
    ("/v2/manager/get_matrix_dep_status", "GET"): rule(READ),
    ("/v2/customnode/getmappings", "GET"): rule(READ),
    ("/v2/customnode/installed", "GET"): rule(READ),
    ("/v2/customnode/getlist", "GET"): rule(READ),
    ("/customnode/alternatives", "GET"): rule(READ),  # legacy/ registers it without /v2
    ("/v2/customnode/versions/{node_name}", "GET"): rule(READ),
    ("/v2/customnode/disabled_versions/{node_name}", "GET"): rule(READ),
    ("/v2/customnode/import_fail_info", "POST"): rule(READ),  # a read by POST
    ("/v2/customnode/import_fail_info_bulk", "POST"): rule(READ),  # a read by POST; page load
    ("/v2/externalmodel/getlist", "GET"): rule(READ),
    ("/v2/snapshot/getlist", "GET"): rule(READ),
    ("/v2/snapshot/get_current", "GET"): rule(READ),
    ("/v2/comfyui_manager/comfyui_versions", "GET"): rule(READ),
    ("/v2/manager/share_option", "GET"): _MANAGER_CHANGE,
    # Changes.
    ("/v2/customnode/fetch_updates", "GET"): rule(ADMIN),  # legacy: git fetch; glob: 410
    ("/v2/customnode/install/git_url", "POST"): rule(ADMIN),
    ("/v2/customnode/install/pip", "POST"): rule(ADMIN),
    ("/v2/manager/queue/task", "POST"): rule(ADMIN),
    ("/v2/manager/queue/batch", "POST"): rule(ADMIN),
    ("/v2/manager/queue/install_model", "POST"): rule(ADMIN),
    ("/v2/manager/queue/update_all", "POST"): rule(ADMIN),
    ("/v2/manager/queue/update_comfyui", "POST"): rule(ADMIN),
    ("/v2/manager/queue/reset", "POST"): rule(ADMIN),
    ("/v2/manager/queue/start", "POST"): rule(ADMIN),
    ("/v2/comfyui_manager/comfyui_switch_version", "POST"): rule(ADMIN),
    ("/v2/manager/db_mode", "POST"): rule(ADMIN),
    ("/v2/manager/policy/update", "POST"): rule(ADMIN),
    ("/v2/manager/channel_url_list", "POST"): rule(ADMIN),
    ("/v2/snapshot/save", "POST"): rule(ADMIN),
    ("/v2/snapshot/remove", "POST"): rule(ADMIN),
    ("/v2/snapshot/restore", "POST"): rule(ADMIN),
    ("/v2/manager/reboot", "POST"): rule(ADMIN),
    ("/v2/manager/get_openart_auth", "GET"): rule(ADMIN),
    ("/v2/manager/set_openart_auth", "POST"): rule(ADMIN),
    ("/v2/manager/get_matrix_auth", "GET"): rule(ADMIN),
    ("/v2/manager/get_comfyworkflows_auth", "GET"): rule(ADMIN),
    ("/v2/manager/youml/settings", "GET"): rule(ADMIN),
    ("/v2/manager/youml/settings", "POST"): rule(ADMIN),
    ("/v2/manager/get_esheep_workflow_and_images", "GET"): rule(ADMIN),
    ("/v2/manager/set_esheep_workflow_and_images", "POST"): rule(ADMIN),
    ("/v2/manager/share", "POST"): rule(ADMIN),
}

# --- comfyui-api-auth (this package: server_routes/*.py register(); plus names core/policy.py reserves) ---
THIS_PACKAGE = {
    ("/login", "GET"): rule(PUBLIC),
    ("/auth/login", "POST"): rule(PUBLIC),
    ("/auth/logout", "POST"): rule(PUBLIC),
    ("/auth/status", "GET"): rule(PUBLIC),
    ("/auth/setup", "POST"): rule(PUBLIC),  # branch fix-websec: the console's one-time setup code
    ("/usage", "GET"): rule(READ, KEY_HOLDER),
    ("/keys", ANY): rule(ADMIN),
    ("/keys/{key_id}", ANY): rule(ADMIN),
    ("/keys/{key_id}/rotate", ANY): rule(ADMIN),
    ("/audit", ANY): rule(ADMIN),
    ("/auth/password", ANY): rule(ADMIN),
    ("/auth/openapi.json", ANY): rule(ADMIN),
    ("/auth/access", ANY): rule(ADMIN),  # what the operator decides: unclassified routes, node rules
    ("/auth/sessions/end-all", ANY): rule(ADMIN),  # branch fix-sessions
}

# Templates aiohttp serves at one path only (no /api twin): newer ComfyUI's
# asset, tag and task routes are added to the app as "/api/..." (so they do
# not exist as "/assets/...", where the frontend's own page files are), and
# the templates handler is added as "/templates/{path}". Every other route
# above answers at both "/X" and "/api/X" ("/internal/..." at its own path).
REGISTERED_ONCE_AS = {
    **{template: "/api" + template for template in (
        "/assets", "/assets/from-hash", "/assets/hash/{hash}", "/assets/{id}",
        "/assets/{id}/content", "/assets/{id}/thumbnail", "/assets/{id}/tags",
        "/assets/tags/refine", "/tags", "/assets/seed", "/assets/seed/status",
        "/assets/seed/cancel", "/assets/prune", "/assets/export",
        "/assets/exports/{exportName}", "/assets/download", "/tasks/{task_id}")},
    "/templates/{path}": "/templates/{path}",
}

# Static mounts (page files), looked up only for static resources. aiohttp
# reports a mount by its prefix without the trailing slash; the web root's is "".
STATIC_MOUNTS = {
    "": READ,            # web.static('/', web_root): the frontend's files
    "/templates": READ,  # workflow templates package
    "/docs": READ,       # embedded docs package
}
STATIC_PREFIXES = (
    ("/extensions/", READ),          # /extensions/<custom node>: each node's WEB_DIRECTORY
    ("/workflow_templates/", READ),  # 0.3.64: /api/workflow_templates/<module>, a node's example workflows
)

SOURCES = {
    "ComfyUI core 0.3.64": COMFYUI_0_3_64,
    "newer ComfyUI (0.38.x)": COMFYUI_NEWER,
    "ComfyUI-Manager 3.31.9": MANAGER_3_31_9,
    "comfyui-manager 4.3": MANAGER_4_3,
    "comfyui-api-auth": THIS_PACKAGE,
}


def _merge(sources: dict) -> dict:
    merged = {}
    for name, entries in sources.items():
        for key, value in entries.items():
            if key in merged and merged[key] != value:
                raise ValueError(f"route {key} classified twice, differently ({name})")
            merged[key] = value
    return merged


ROUTES = _merge(SOURCES)


def lookup(template: str, method: str, *, static: bool = False):
    """The Rule or QueryRule for a matched route, or None if the table does
    not know it. ``template`` is already stripped of the ``/api`` twin prefix;
    ``static`` says the matched resource is a static mount."""
    if static:
        return _static_rule(template)
    found = ROUTES.get((template, method))
    if found is None and method == "HEAD":
        found = ROUTES.get((template, "GET"))
    if found is None:
        found = ROUTES.get((template, ANY))
    return found


def _static_rule(mount: str):
    route_class = STATIC_MOUNTS.get(mount)
    if route_class is None:
        for prefix, prefix_class in STATIC_PREFIXES:
            if mount.startswith(prefix):
                route_class = prefix_class
                break
    return None if route_class is None else Rule(route_class)


def required_class(template: str, method: str, query=(), *, static: bool = False):
    """The class a request needs, or None for a route the table does not know
    (``admin`` in ``require`` mode). ``query`` is anything supporting ``in``
    over the query string's parameter names."""
    found = lookup(template, method, static=static)
    if found is None:
        return None
    if isinstance(found, QueryRule):
        return found.route_class(query)
    return found.route_class


def counts_by_source() -> dict:
    """{source: {class or "query": number of (template, method) entries}};
    "query" counts the query-dependent rules (read, or admin with the param)."""
    counts = {}
    for name, entries in SOURCES.items():
        per_class = dict.fromkeys(CLASSES + ("query",), 0)
        for value in entries.values():
            per_class["query" if isinstance(value, QueryRule) else value.route_class] += 1
        counts[name] = per_class
    return counts
