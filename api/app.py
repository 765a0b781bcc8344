"""The FastAPI application: `create_app(config)` builds it; the lifespan opens its resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api import problems
from api.config import API_VERSION, ApiConfig
from api.routes import devices, health, kinds, latest, readings
from devices import Registry
from timeseries import InfluxClient

log = logging.getLogger(__name__)

DEFAULT_DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "static"


def create_app(config: ApiConfig) -> FastAPI:
    """The lantaarn HTTP API under /v1, with the dashboard at /dashboard."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with Registry(config.registry_url) as registry:
            async with InfluxClient(config.influx) as influx:
                app.state.registry = registry
                app.state.influx = influx
                app.state.config = config
                yield

    app = FastAPI(
        title="lantaarn",
        summary="Telemetry of sensors and smart lampposts in public space",
        version=API_VERSION,
        contact={"name": "lantaarn developers", "url": "https://lantaarn.invalid/"},
        license_info={"name": "EUPL-1.2", "identifier": "EUPL-1.2"},
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    problems.install(app)

    @app.middleware("http")
    async def _headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["API-Version"] = API_VERSION
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.url.path.startswith(("/dashboard", "/v1/docs")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["*"],
            expose_headers=["API-Version", "Link"],
        )

    for module in (health, kinds, devices, readings, latest):
        app.include_router(module.router)

    dashboard = config.dashboard_dir or DEFAULT_DASHBOARD
    if (dashboard / "index.html").exists():

        @app.get("/dashboard", include_in_schema=False)
        async def _dashboard() -> FileResponse:
            return FileResponse(dashboard / "index.html")

        app.mount("/dashboard/", StaticFiles(directory=dashboard), name="dashboard")
    return app
