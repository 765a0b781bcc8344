"""Errors as RFC 9457 problem details (`application/problem+json`), from one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from devices import Conflict, InvalidDevice, NotFound
from timeseries import InfluxError, InfluxUnavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ApiProblem(Exception):
    """An error the API answers with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        invalid_params: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid_params = invalid_params
        self.headers = headers or {}


class BadRequest(ApiProblem):
    """400 with every problem listed."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__(400, "Invalid request", "; ".join(p["reason"] for p in problems), problems)


class Unauthorized(ApiProblem):
    """401: no key where one is needed, or a key we do not know (or that was revoked)."""

    def __init__(self, detail: str, *, invalid_key: bool) -> None:
        challenge = 'Bearer realm="lantaarn"'
        if invalid_key:
            # RFC 6750 section 3: a presented but unusable token is "invalid_token".
            challenge += ', error="invalid_token"'
        super().__init__(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


class Forbidden(ApiProblem):
    """403: a valid key whose role or tenants do not cover the request."""

    def __init__(self, detail: str) -> None:
        super().__init__(403, "Forbidden", detail)


class ContentTooLarge(ApiProblem):
    """413: a request body over the route's cap (in bytes), refused before it is read whole."""

    def __init__(self, limit: int, path: str) -> None:
        super().__init__(
            413, "Content too large", f"a request body to {path} may have at most {limit} bytes"
        )


class TooManyRequests(ApiProblem):
    """429: this client address failed to authenticate too often; wait `retry_after_s` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            429,
            "Too many requests",
            f"too many failed authentications from this address; try again in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )


# A device id is unique across the platform, so an operator must learn that one is taken; the
# words say neither whose it is nor whether its device is active, retired or of their own tenant.
TAKEN = "this device id is taken (ids are unique across the platform): choose another"


def taken(reason: str) -> str:
    """A registry's reason with "device 'x' already exists" said as TAKEN (the rest kept)."""
    if reason.endswith("already exists"):
        start = reason.find("device ")
        prefix = reason[:start] if start > 0 else ""
        return f"{prefix}{TAKEN}"
    return reason


def problem(
    status: int, title: str, detail: str | None = None, instance: str | None = None, **extra: Any
) -> JSONResponse:
    """A problem details response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _location(loc: tuple[Any, ...]) -> tuple[str, str]:
    where = str(loc[0]) if loc else "body"
    name = ".".join(str(part) for part in loc[1:]) or where
    return where, name


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    # Ask the router which methods would fully match this path; that needs no knowledge of how
    # FastAPI wraps included routers.
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        params = []
        for error in exc.errors():
            where, name = _location(tuple(error.get("loc", ())))
            params.append({"name": name, "in": where, "reason": str(error.get("msg", ""))})
        return problem(
            400,
            "Invalid request",
            f"{len(params)} problem(s) in the request",
            request.url.path,
            invalidParams=params,
        )

    @app.exception_handler(ApiProblem)
    async def _api(request: Request, exc: ApiProblem) -> JSONResponse:
        response = problem(
            exc.status, exc.title, exc.detail, request.url.path, invalidParams=exc.invalid_params
        )
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        response = problem(exc.status_code, title, str(exc.detail), request.url.path)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        if exc.status_code == 405:
            # Starlette names only the methods of the first route with this path; a path served
            # by several routes (GET and PATCH of one device) must list them all.
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "Not found", str(exc), request.url.path)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        if exc.what != "device":
            return problem(409, "Conflict", str(exc), request.url.path)
        # 409, the status of "the target's state conflicts", whoever holds the id: the same
        # answer for one's own device, a retired one and another tenant's.
        params = [{"name": "deviceId", "in": "body", "reason": TAKEN}]
        return problem(409, "Conflict", TAKEN, request.url.path, invalidParams=params)

    @app.exception_handler(InvalidDevice)
    async def _invalid_device(request: Request, exc: InvalidDevice) -> JSONResponse:
        params = [{"name": exc.field or "body", "in": "body", "reason": exc.message}]
        return problem(400, "Invalid request", exc.message, request.url.path, invalidParams=params)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Starlette hands this to its outermost middleware, after logging nothing: we log it.
        log.error("unhandled error answering %s", request.url.path, exc_info=exc)
        return problem(500, "Internal server error", None, request.url.path)

    @app.exception_handler(InfluxError)
    async def _influx(request: Request, exc: InfluxError) -> JSONResponse:
        log.warning("time-series store failed: %s", exc)
        if isinstance(exc, InfluxUnavailable):
            return problem(
                503, "Time-series store unavailable", "try again shortly", request.url.path
            )
        return problem(502, "Time-series store error", "the query failed", request.url.path)


# -- the OpenAPI document -------------------------------------------------------------------------

_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "invalidParams": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "in", "reason"],
                "properties": {
                    "name": {"type": "string"},
                    "in": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}

_DESCRIPTIONS = {
    400: "Invalid request: every problem listed in invalidParams",
    401: "No valid API key",
    403: "The API key does not allow this",
    404: "Not found",
    405: "Method not allowed",
    413: "The request body is over this route's limit",
    429: "Too many failed authentications from this address; see Retry-After",
}


def document(schema: dict[str, Any]) -> None:
    """Describe our errors in an OpenAPI document (in place): 400 not 422, problem+json bodies.

    FastAPI documents its own 422 answer; ours is a 400 problem document, so every operation that
    takes input says so, and every error answer gets the problem schema.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = _PROBLEM_SCHEMA
    ref = {"$ref": "#/components/schemas/Problem"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            parameters = operation.get("parameters", [])
            if parameters or "requestBody" in operation:
                responses.setdefault("400", {})
            if "requestBody" in operation:
                responses.setdefault("413", {})
            if operation.get("security"):
                responses.setdefault("429", {})
            if any(p.get("in") == "path" for p in parameters):
                responses.setdefault("404", {})
            for code, response in responses.items():
                # An error answer documented without a body (or a 422 left over) is one of ours;
                # one with its own model (the health checks' 503) keeps it.
                if code[0] in "45" and not response.get("content"):
                    response.setdefault("description", _DESCRIPTIONS.get(int(code), "Error"))
                    response["content"] = {PROBLEM_JSON: {"schema": ref}}
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
