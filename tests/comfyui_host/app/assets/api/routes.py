"""Newer ComfyUI's asset routes, as far as the stand-in has them: the list and
the content of one asset (registered on the app as "/api/...", without twin)."""

import os
import urllib.parse

from aiohttp import web

from app.assets import services

ROUTES = web.RouteTableDef()
UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def register_assets_routes(app: web.Application, user_manager_instance=None) -> None:
    app.add_routes(ROUTES)


@ROUTES.get("/api/assets")
async def list_assets_route(request: web.Request) -> web.Response:
    assets = []
    for asset_id, (root, path) in sorted(services.scan().items(), key=lambda item: item[1][1]):
        name = os.path.basename(path)
        assets.append({"id": asset_id, "name": name, "tags": [root],
                       "preview_url": f"/api/view?type={root}&filename={urllib.parse.quote(name, safe='')}"})
    return web.json_response({"assets": assets, "total": len(assets), "has_more": False})


@ROUTES.get(f"/api/assets/{{id:{UUID_RE}}}/content")
async def download_asset_content(request: web.Request) -> web.Response:
    try:
        result = services.resolve_asset_for_download(reference_id=request.match_info["id"].lower())
    except ValueError as error:
        return web.json_response({"error": {"code": "ASSET_NOT_FOUND", "message": str(error), "details": {}}},
                                 status=404)
    except FileNotFoundError:
        return web.json_response({"error": {"code": "FILE_NOT_FOUND", "message": "Underlying file not found on disk.",
                                            "details": {}}}, status=404)
    return web.FileResponse(result.abs_path, headers={
        "Content-Type": result.content_type,
        "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(result.download_name)}"})
