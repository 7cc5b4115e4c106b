"""Node rules at ``POST /prompt``: a workflow with a node class the caller's
scope may not run is refused (403 ``NODE_NOT_ALLOWED``) before ComfyUI sees it.

The rules (``core.node_rules``) are worked out when the settings load; with
none, this hook wraps no route and costs nothing. With some, it costs a dict
walk on ``POST /prompt`` only: aiohttp keeps the body it read, so ComfyUI's
handler reads it again without a second upload. A body that is not a JSON
object is left to ComfyUI's handler, which answers it as it always has.
"""

from ..core.node_rules import refused_node
from .responses import error


class NodeRulesHook:
    def __init__(self, runtime):
        self.rules = runtime.settings.node_rules

    def wrapper(self, path, method):
        """A route hook (see route_hooks): around ``POST /prompt``, when the operator wrote rules."""
        return self.run if path == "/prompt" and method == "POST" and self.rules.any else None

    async def run(self, request, handler, principal, now):
        # Anonymous callers and the local bootstrap are level 0, which no rule names.
        rule = self.rules.by_level[principal.level]
        if rule is None:
            return await handler(request)
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # not JSON (or not UTF-8): ComfyUI's handler answers it
            return await handler(request)
        refused = refused_node(rule, body.get("prompt")) if isinstance(body, dict) else None
        if refused is None:
            return await handler(request)
        node_id, class_type = refused
        return error(403, "NODE_NOT_ALLOWED",
                     f"node '{node_id}' ({class_type}) is not allowed for the {rule.scope} scope by this server's "
                     "node rules (COMFYUI_API_AUTH_NODE_RULES); nothing was queued",
                     class_type=class_type, node_id=node_id, scope=rule.scope)
