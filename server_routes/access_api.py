"""``GET /auth/access`` (admins): what the operator decided about access, in one
answer for the panel's "Access" card: the scopes and what each allows, the
scopes a new key gets, the routes no rule classifies (custom nodes' routes the
package does not know; they need the admin scope), the operator's route
scope overrides, and the node rules.
"""

from aiohttp import web

from ..core.scopes import DEFAULT_SCOPES, KNOWN_SCOPES, SCOPE_SUMMARIES


class AccessApi:
    def __init__(self, runtime):
        self.runtime = runtime

    async def access(self, request):
        runtime = self.runtime
        return web.json_response({
            "scopes": {scope: SCOPE_SUMMARIES[scope] for scope in KNOWN_SCOPES},
            "default_scopes": list(DEFAULT_SCOPES),
            # Filled in by the runtime at startup, once every package's routes exist.
            "unclassified_routes": list(getattr(runtime, "unclassified_routes", None) or []),
            "route_scopes": dict(getattr(runtime.settings, "route_scopes", None) or {}),
            "node_rules": runtime.settings.node_rules.describe(),
        }, headers={"Cache-Control": "no-store"})

    def register(self, routes):
        routes.get("/auth/access")(self.access)
