"""A few ComfyUI-Manager 3.31.9 routes (same paths and methods, effects kept
in memory): what a key must not reach. See ../README.md."""

from aiohttp import web

import server

NODE_CLASS_MAPPINGS = {}
routes = server.PromptServer.instance.routes
effects = {"install_queue": [], "preview_method": "auto", "reboots": 0}


@routes.get("/manager/version")
async def version(request):
    return web.Response(text="V3.31.9")


@routes.get("/manager/queue/status")
async def queue_status(request):
    return web.json_response({"total_count": len(effects["install_queue"]), "is_processing": False})


@routes.get("/customnode/getlist")
async def getlist(request):
    return web.json_response({"channel": "local", "node_packs": {}})


@routes.get("/manager/preview_method")
async def preview_method(request):
    # Manager's own shape: the query's presence changes the setting.
    if "value" in request.rel_url.query:
        effects["preview_method"] = request.rel_url.query["value"]
        return web.Response(status=200)
    return web.Response(text=effects["preview_method"])


@routes.post("/manager/queue/install")
async def queue_install(request):
    effects["install_queue"].append(await request.json())
    return web.Response(status=200)


@routes.get("/manager/reboot")
async def reboot(request):
    effects["reboots"] += 1
    return web.Response(status=200)


@routes.get("/manager_like/effects")
async def show_effects(request):
    return web.json_response(effects)
