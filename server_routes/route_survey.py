"""Which of the server's routes nobody classified, found once at startup.

Other custom nodes add routes the route table cannot know; a key needs the
admin scope there (secure by default). The operator learns which they are
from one log line and from the panel's access view, and may open them with
``COMFYUI_API_AUTH_ROUTE_SCOPES``.
"""

from aiohttp import web

from ..core.policy import canonical_path


def all_routes(app: web.Application):
    """(resource, method) of every route of ``app`` and its sub-applications
    (ComfyUI mounts ``/internal`` as one)."""
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            yield from all_routes(resource._app)
            continue
        for route in resource:
            yield resource, route.method


def unclassified_routes(app: web.Application, policy) -> list[dict]:
    """[{"path": ..., "methods": [...]}] of the routes the policy gives the
    admin level only because nobody classified them; the path without the
    /api twin prefix (one entry for both twins)."""
    methods_by_path: dict[str, set] = {}
    for resource, method in all_routes(app):
        if method == "HEAD" or method == "OPTIONS":
            continue  # HEAD follows GET; a preflight is ComfyUI's CORS middleware's
        template = resource.canonical
        need = policy.classify(template, method, isinstance(resource, web.StaticResource))
        if need.unclassified:
            shown = "ANY" if method == "*" else method
            methods_by_path.setdefault(canonical_path(template) or "/", set()).add(shown)
    return [{"path": path, "methods": sorted(methods)} for path, methods in sorted(methods_by_path.items())]
