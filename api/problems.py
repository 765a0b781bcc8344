"""Errors as RFC 9457 problem details (`application/problem+json`), from one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid_params = invalid_params


class BadRequest(ApiProblem):
    """400 with every problem listed."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__(400, "Invalid request", "; ".join(p["reason"] for p in problems), problems)


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
        return problem(
            exc.status, exc.title, exc.detail, request.url.path, invalidParams=exc.invalid_params
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        response = problem(exc.status_code, title, str(exc.detail), request.url.path)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "Not found", str(exc), request.url.path)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem(409, "Conflict", str(exc), request.url.path)

    @app.exception_handler(InvalidDevice)
    async def _invalid_device(request: Request, exc: InvalidDevice) -> JSONResponse:
        params = [{"name": exc.field or "body", "in": "body", "reason": exc.message}]
        return problem(400, "Invalid request", exc.message, request.url.path, invalidParams=params)

    @app.exception_handler(InfluxError)
    async def _influx(request: Request, exc: InfluxError) -> JSONResponse:
        log.warning("time-series store failed: %s", exc)
        if isinstance(exc, InfluxUnavailable):
            return problem(
                503, "Time-series store unavailable", "try again shortly", request.url.path
            )
        return problem(502, "Time-series store error", "the query failed", request.url.path)
