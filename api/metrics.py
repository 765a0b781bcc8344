"""Prometheus metrics of the API: requests by route template and status, and their duration.

Each app gets its own `CollectorRegistry` (no module-level state), served at `/metrics`.
Routes are labelled by their template (`/v1/devices/{deviceId}`), never by the raw path, so a
scan of random URLs cannot blow up the number of series: what no route matched is `<unmatched>`.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Seconds; from a cached catalogue answer to a year of raw readings.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestMetrics:
    """The API's request counters and histograms, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "lantaarn_http_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "lantaarn_http_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its answer, in seconds",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "lantaarn_http_requests_in_progress",
            "HTTP requests being answered",
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_template(scope: Scope, root_path: str) -> str:
    """The template of the route that answered (after routing), else the mount, else unmatched."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # A mount (Swagger UI's files under /v1/docs) extends root_path by its own path.
    mounted = str(scope.get("root_path", ""))
    if mounted != root_path and mounted.startswith(root_path):
        return f"{mounted[len(root_path) :]}/{{path}}"
    return UNMATCHED


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request; add it innermost so routing is visible."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request and count it, also when the app fails."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before answering
        root_path = str(scope.get("root_path", ""))

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        self.metrics.in_progress.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, _send)
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.in_progress.dec()
            route = route_template(scope, root_path)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.duration.labels(method, route).observe(elapsed)
