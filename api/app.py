"""The FastAPI application: `create_app(config)` builds it; the lifespan opens its resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import auth, docs, open_access, openapi_rules, problems
from api.config import API_VERSION, ApiConfig
from api.dashboard_files import DashboardFiles
from api.fleet import FleetCache
from api.guard import RequestGuard
from api.keys import KeyStore
from api.lowest_completeness import LowestCompleteness
from api.metrics import MetricsMiddleware, RequestMetrics
from api.routes import (
    activity,
    aggregates,
    alerts,
    certificates,
    commands,
    completeness,
    devices,
    energy,
    events,
    health,
    kinds,
    latest,
    map_points,
    open_data,
    readings,
    rejections,
    schedules,
    sessions,
    summary,
    tenants,
)
from api.sessions import SessionStore
from api.sta import router as sta_router
from api.summary import WORST as SUMMARY_WORST
from api.summary import SummaryCache
from api.throttle import FailedLogins
from broker.command_service import CommandService
from devices import Registry
from devices.command_history import CommandStore
from devices.schedule_store import ScheduleStore
from devices.scheduler import Scheduler
from timeseries import InfluxClient

log = logging.getLogger(__name__)

DEFAULT_DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "static"

# The security headers of the NLGov API Design Rules (transport security module) and OWASP's
# REST advice. HSTS is sent always: browsers ignore it over plain HTTP (RFC 6797, 8.1), and behind
# a TLS-terminating proxy it is what the rules ask for.
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000",
}
# JSON and CSV answers load nothing and may be framed by nobody.
CSP_API = "default-src 'none'; frame-ancestors 'none'"
# The dashboard is our own files only; images may also be a data: URL or the map tiles of a
# tile server the operator names (any https origin: tiles are drawn, never run).
CSP_DASHBOARD = (
    "default-src 'self'; img-src 'self' data: https:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# Swagger UI from our own files (api/docs.py): no other origin, no inline script; its React
# components set style attributes, hence 'unsafe-inline' for styles only.
CSP_DOCS = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
# Readable from pages of any origin (NLGov ADR: the OpenAPI document; and the open data, which
# is for anyone). None of them answers differently with a cookie, so `*` gives nothing away.
_ANY_ORIGIN_PATHS = ("/v1/openapi.json", "/v1/catalog")
_ANY_ORIGIN_PREFIXES = ("/v1/open-data/",)


class ResponseHeaders:
    """ASGI middleware: API-Version and the security and caching headers on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers as the answer starts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope["path"])
        if path == "/dashboard" or path.startswith("/dashboard/"):
            # Kept, but asked again each time (a 304 by the file's ETag when unchanged): left to
            # the browser's own guess from Last-Modified, an upgrade could meet a page that
            # mixes old and new modules for hours.
            csp, cache = CSP_DASHBOARD, "no-cache"
        elif path == "/v1/docs" or path.startswith("/v1/docs/"):
            csp, cache = CSP_DOCS, None
        else:
            csp, cache = CSP_API, "no-store"
        any_origin = path in _ANY_ORIGIN_PATHS or path.startswith(_ANY_ORIGIN_PREFIXES)

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["API-Version"] = API_VERSION
                for name, value in _SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", csp)
                if cache is not None:
                    headers.setdefault("Cache-Control", cache)
                if any_origin:
                    headers["Access-Control-Allow-Origin"] = "*"
            await send(message)

        await self.app(scope, receive, _send)


def create_app(config: ApiConfig) -> FastAPI:
    """The lantaarn HTTP API under /v1, with the dashboard at /dashboard."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with (
            Registry(config.registry_url) as registry,
            KeyStore(config.registry_url) as keys,
            CommandStore(config.registry_url) as command_store,
            ScheduleStore(config.registry_url) as schedule_store,
        ):
            async with InfluxClient(config.influx) as influx, AsyncExitStack() as stack:
                app.state.registry = registry
                app.state.fleet = FleetCache(registry)
                lowest = LowestCompleteness(influx, keep=SUMMARY_WORST)
                stack.push_async_callback(lowest.close)
                app.state.summaries = SummaryCache(registry, completeness=lowest)
                app.state.open_data = open_access.OpenDataCache(registry)
                app.state.keys = keys
                app.state.influx = influx
                app.state.config = config
                app.state.commands = command_store
                app.state.command_service = None
                if config.commands is not None:
                    app.state.command_service = await stack.enter_async_context(
                        CommandService(config.commands, command_store)
                    )
                app.state.schedules = schedule_store
                if config.scheduler is not None:
                    service = app.state.command_service
                    await stack.enter_async_context(
                        Scheduler(config.scheduler, schedule_store, service and service.wake)
                    )
                app.state.throttle = FailedLogins(
                    config.auth_failure_burst, config.auth_failure_refill_s
                )
                app.state.sessions = SessionStore(config.session_idle_s, config.session_max_s)
                yield

    app = FastAPI(
        title="lantaarn",
        summary="Telemetry of sensors and smart lampposts in public space",
        version=API_VERSION,
        # The e-mail address is added by openapi_rules (FastAPI's model would want a package).
        contact={"name": "lantaarn developers", "url": "https://lantaarn.invalid/"},
        license_info={"name": "EUPL-1.2", "identifier": "EUPL-1.2"},
        openapi_url="/v1/openapi.json",
        docs_url=None,  # api/docs.py serves Swagger UI from our own files
        redoc_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    problems.install(app)

    # Starlette runs the middleware added last first: metrics sit innermost so they see the
    # route that answered; the headers reach every answer, CORS preflights included.
    metrics = RequestMetrics()
    for collector in config.collectors:
        metrics.registry.register(collector)
    # Innermost of all: the key is checked and the body capped before any route reads it.
    app.add_middleware(
        RequestGuard,
        default_cap=config.max_body_bytes,
        caps={"/v1/device-imports": config.max_import_bytes},
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # /v1/latest for 10,000 devices is 3 MB of JSON; compressed it is a tenth, which matters
    # to an operator's dashboard away from the server. A middle level costs little CPU.
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["*"],
            expose_headers=["API-Version", "Link", "WWW-Authenticate"],
        )
    app.add_middleware(ResponseHeaders)

    @app.get(
        "/metrics", include_in_schema=False, dependencies=[Depends(auth.require_metrics_reader)]
    )
    async def _metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    for module in (
        health,
        kinds,
        tenants,
        devices,
        certificates,
        commands,
        schedules,
        energy,
        alerts,
        readings,
        aggregates,
        latest,
        map_points,
        summary,
        events,
        open_data,
        rejections,
        activity,
        completeness,
        sessions,
    ):
        app.include_router(module.router)
    app.include_router(sta_router)

    dashboard = config.dashboard_dir or DEFAULT_DASHBOARD
    if (dashboard / "index.html").exists():
        files = DashboardFiles(dashboard)

        # HEAD too, as StaticFiles did: monitors and proxies probe the page with it.
        @app.api_route("/dashboard", methods=["GET", "HEAD"], include_in_schema=False)
        async def _dashboard(request: Request) -> Response:
            return files.answer(request, "index.html")

        @app.api_route("/dashboard/config.json", methods=["GET", "HEAD"], include_in_schema=False)
        async def _dashboard_config() -> dict[str, str]:
            # What the page needs from the settings before it asks the API anything.
            return {"mapTiles": config.map_tiles, "mapAttribution": config.map_attribution}

        @app.api_route("/dashboard/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
        async def _dashboard_file(request: Request, name: str) -> Response:
            return files.answer(request, name)

    plain_openapi = app.openapi

    def _openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain_openapi()
            auth.document(schema)
            problems.document(schema)
            openapi_rules.document(schema, public_url=config.public_url)
        return app.openapi_schema or {}

    app.openapi = _openapi  # type: ignore[method-assign]
    docs.install(app)
    return app
