"""A custom node whose routes no table knows (see ../README.md)."""

from aiohttp import web

import server

NODE_CLASS_MAPPINGS = {}
routes = server.PromptServer.instance.routes


@routes.get("/my_node/echo")
async def echo(request):
    return web.json_response({"echo": request.rel_url.query.get("say", "")})


@routes.post("/my_node/items/{item_id}")
async def store(request):
    return web.json_response({"stored": request.match_info["item_id"]})
