"""An async client for InfluxDB's v1-compatible HTTP API: `/write`, `/query`, `/ping`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import orjson

from timeseries.errors import (
    InfluxAuthFailed,
    InfluxError,
    InfluxRejected,
    InfluxTooLarge,
    InfluxUnavailable,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    """Where InfluxDB is and how to log in (user/password for 1.x, or a token for 2.x/3.x)."""

    url: str
    database: str = "lantaarn"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a query result: name, tags, column names and rows."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])
    except orjson.JSONDecodeError:
        pass
    return response.text[:500]


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Translate an InfluxDB answer into our errors."""
    status = response.status_code
    if 200 <= status < 300:
        return
    text = _error_text(response)
    if status in (401, 403):
        raise InfluxAuthFailed(
            f"InfluxDB refused our credentials for {what}: {status} {text}", status=status
        )
    if status == 413:
        raise InfluxTooLarge(f"InfluxDB: {what} too large: {text}", status=status)
    if status == 429 or status >= 500:
        raise InfluxUnavailable(
            f"InfluxDB {status} on {what}: {text}",
            status=status,
            retry_after=_retry_after(response),
        )
    if status == 404:
        # 1.x answers 404 when the database is missing: a configuration problem worth retrying
        # once the schema is set up again.
        raise InfluxUnavailable(f"InfluxDB 404 on {what}: {text}", status=status)
    raise InfluxRejected(f"InfluxDB {status} on {what}: {text}", status=status)


class InfluxClient:
    """The HTTP conversation with one InfluxDB; an async context manager."""

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        headers = {}
        auth: tuple[str, str] | None = None
        if config.token:
            headers["Authorization"] = f"Token {config.token}"
        elif config.username:
            auth = (config.username, config.password or "")
        self._http = httpx.AsyncClient(
            base_url=config.url, headers=headers, auth=auth, timeout=config.timeout_s
        )

    async def __aenter__(self) -> InfluxClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def ping(self) -> None:
        """Raise InfluxUnavailable unless the database answers /ping."""
        try:
            response = await self._http.get("/ping")
        except httpx.HTTPError as exc:
            raise InfluxUnavailable(f"InfluxDB at {self.config.url} unreachable: {exc}") from exc
        raise_for_status(response, "ping")

    async def write(self, body: bytes, *, retention_policy: str | None = None) -> None:
        """Write line protocol (nanosecond timestamps) in one request."""
        params = {"db": self.config.database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        try:
            response = await self._http.post("/write", params=params, content=body)
        except httpx.HTTPError as exc:
            raise InfluxUnavailable(f"writing to InfluxDB failed: {exc!r}") from exc
        raise_for_status(response, "write")

    async def query(
        self,
        q: str,
        *,
        params: dict[str, Any] | None = None,
        database: bool = True,
        write: bool = False,
    ) -> list[list[Series]]:
        """Run InfluxQL; one list of series per statement. Times come back as epoch ns."""
        form: dict[str, str] = {"q": q, "epoch": "ns"}
        if database:
            form["db"] = self.config.database
        if params:
            form["params"] = orjson.dumps(params).decode()
        try:
            if write:
                response = await self._http.post("/query", data=form)
            else:
                response = await self._http.get("/query", params=form)
        except httpx.HTTPError as exc:
            raise InfluxUnavailable(f"querying InfluxDB failed: {exc!r}") from exc
        raise_for_status(response, "query")
        body = orjson.loads(response.content)
        out: list[list[Series]] = []
        for result in body.get("results", []):
            if "error" in result:
                raise InfluxRejected(f"InfluxQL error: {result['error']}")
            out.append(
                [
                    Series(
                        s.get("name", ""),
                        s.get("tags") or {},
                        s.get("columns", []),
                        s.get("values", []),
                    )
                    for s in result.get("series", [])
                ]
            )
        return out

    async def execute(self, statements: Sequence[str]) -> None:
        """Run statements that change things (CREATE, ALTER, DROP)."""
        for statement in statements:
            await self.query(statement, write=True, database=False)


__all__ = ["InfluxClient", "InfluxConfig", "InfluxError", "Series", "raise_for_status"]
