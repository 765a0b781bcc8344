"""`/v1/docs`: Swagger UI from the platform's own files, never from a CDN.

A page that loads its code from a public CDN breaks on a network without internet and tells a
third party who reads the docs. scripts/vendor-js.sh copies a pinned `swagger-ui-dist` (npm)
into api/static/swagger-ui/ (the Makefile's setup runs it); our start script is
api/static/swagger-init.js, so the page runs no inline script and its CSP allows only 'self'.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.problems import problem

log = logging.getLogger(__name__)

STATIC: Final = Path(__file__).resolve().parent / "static"
SWAGGER_UI: Final = STATIC / "swagger-ui"

# Paths are relative to /v1/docs, so the page works under any prefix a proxy adds.
_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lantaarn API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/swagger-init.js"></script>
</body>
</html>
"""


def install(app: FastAPI, folder: Path = SWAGGER_UI) -> None:
    """Serve Swagger UI at /v1/docs from `folder` (the vendored swagger-ui-dist files)."""
    if not (folder / "swagger-ui-bundle.js").exists():
        log.warning(
            "no Swagger UI files in %s: run scripts/vendor-js.sh; /v1/docs answers 503", folder
        )

    # HEAD too: an operator's monitor may probe the docs page (the assets answer it already).
    @app.api_route("/v1/docs", methods=["GET", "HEAD"], include_in_schema=False)
    async def _docs() -> Response:
        if not (folder / "swagger-ui-bundle.js").exists():
            return problem(
                503,
                "Service unavailable",
                "the Swagger UI files are not installed: run scripts/vendor-js.sh",
            )
        return HTMLResponse(_PAGE)

    @app.api_route("/v1/docs/swagger-init.js", methods=["GET", "HEAD"], include_in_schema=False)
    async def _start() -> FileResponse:
        return FileResponse(STATIC / "swagger-init.js", media_type="text/javascript")

    app.mount("/v1/docs/assets", StaticFiles(directory=folder, check_dir=False), name="swagger")
