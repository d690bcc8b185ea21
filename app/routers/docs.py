"""/docs: the Swagger UI docs explorer, served from this service alone.

Swagger UI's files come from the ``swagger-ui-bundle-v2`` package, not a CDN, and the
page's start-up script is a file too (/docs/init.js), so the Content-Security-Policy of
the docs pages allows scripts from 'self' only: no inline script, no other origin.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

from app.core.errors import not_found

router = APIRouter(prefix="/docs", include_in_schema=False)

ASSETS_DIR = Path(str(swagger_ui_path))
# Only these files are served: a name is looked up here, never joined to a path.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""


@router.get("", response_class=HTMLResponse)
async def docs_page(request: Request) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(f"{request.app.title} - docs explorer")))


@router.get("/init.js")
async def docs_init(request: Request) -> Response:
    params: dict[str, Any] = {**swagger_ui_default_parameters, **(request.app.swagger_ui_parameters or {})}
    params["url"] = request.app.openapi_url
    script = (
        f"window.ui = SwaggerUIBundle(Object.assign({json.dumps(params)}, {{\n"
        "  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],\n"
        "}));\n"
    )
    return Response(script, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise not_found("asset")
    return FileResponse(ASSETS_DIR / name, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=86400"})
