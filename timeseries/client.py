"""An async client for InfluxDB's v1-compatible HTTP API: `/write`, `/query`, `/ping`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import httpx
import msgpack
import orjson

from timeseries.errors import (
    InfluxAuthFailed,
    InfluxBadAnswer,
    InfluxError,
    InfluxRejected,
    InfluxTooLarge,
    InfluxUnavailable,
)

log = logging.getLogger(__name__)

# Beyond this a query is sent in a POST body, not the URL: httpx refuses URLs over 64 KiB and
# proxies often far less, while a query can name many devices.
MAX_URL_QUERY_BYTES = 8 * 1024
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_IDENTITY = {"Accept-Encoding": "identity"}
# MessagePack instead of JSON: InfluxDB spends about a third less CPU writing a large answer
# (bench/results/sta.md), and decoding it here costs what parsing JSON does.
_MSGPACK = "application/x-msgpack"
_PACKED = {"Accept": _MSGPACK, "Accept-Encoding": "identity"}


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


def _decode(content: bytes, packed: bool) -> object:
    """An answer's body: MessagePack when InfluxDB says so, else JSON. InfluxBadAnswer if it is
    neither."""
    if packed:
        try:
            return msgpack.unpackb(content, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            raise InfluxBadAnswer(f"not MessagePack: {content[:100]!r}") from None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise InfluxBadAnswer(f"not JSON: {content[:100]!r}") from None


def _is_packed(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("Content-Type", "")
    return content_type.startswith(_MSGPACK)


def _error_text(response: httpx.Response) -> str:
    try:
        body = _decode(response.content, _is_packed(response))
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])
    except InfluxBadAnswer:
        pass
    return response.text[:500]


def _series(raw: object) -> Series:
    """One series of an answer, checked for the shape our queries rely on."""
    if not isinstance(raw, dict):
        raise InfluxBadAnswer(f"a series is not an object: {str(raw)[:100]}")
    name = raw.get("name", "")
    tags = raw.get("tags") or {}
    columns = raw.get("columns", [])
    values = raw.get("values", [])
    if not (
        isinstance(name, str)
        and isinstance(tags, dict)
        and all(isinstance(v, str) for v in tags.values())
        and isinstance(columns, list)
        and all(isinstance(c, str) for c in columns)
        and isinstance(values, list)
    ):
        raise InfluxBadAnswer(f"series {str(name)[:64]!r} is not name, tags, columns and values")
    width = len(columns)
    time_at = columns.index("time") if "time" in columns else None
    for row in values:
        if not isinstance(row, list) or len(row) != width:
            raise InfluxBadAnswer(f"series {name!r} has a row that does not fit its columns")
        # Asked for epoch=ns, times are integers; bool is an int to Python but not a time.
        if time_at is not None and type(row[time_at]) is not int:
            raise InfluxBadAnswer(f"series {name!r} has a time that is not epoch ns")
    return Series(name, tags, columns, values)


def parse_results(content: bytes, *, packed: bool = False) -> list[list[Series]]:
    """The series of each statement's result in a /query answer (JSON, or MessagePack when
    `packed`).

    InfluxRejected for a statement InfluxDB refused (an InfluxQL error); InfluxBadAnswer for
    anything that is not a /query answer at all.
    """
    body = _decode(content, packed)
    if not isinstance(body, dict):
        raise InfluxBadAnswer(f"not an object: {content[:100]!r}")
    if "error" in body:
        raise InfluxRejected(f"InfluxDB: {str(body['error'])[:500]}")
    results = body.get("results")
    if not isinstance(results, list):
        raise InfluxBadAnswer(f"no results in the answer: {content[:100]!r}")
    out: list[list[Series]] = []
    for result in results:
        if not isinstance(result, dict):
            raise InfluxBadAnswer(f"a result is not an object: {str(result)[:100]}")
        if "error" in result:
            raise InfluxRejected(f"InfluxQL error: {str(result['error'])[:500]}")
        series = result.get("series", [])
        if not isinstance(series, list):
            raise InfluxBadAnswer("a result's series are not a list")
        out.append([_series(s) for s in series])
    return out


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
        q: str | Sequence[str],
        *,
        params: dict[str, Any] | None = None,
        database: bool = True,
        write: bool = False,
        compressed: bool = True,
        packed: bool = False,
    ) -> list[list[Series]]:
        """Run InfluxQL; one list of series per statement. Times come back as epoch ns.

        `q` is one text (of one or more statements) or a sequence of statements, whose answer
        then has exactly one result per statement. A query longer than `MAX_URL_QUERY_BYTES`
        goes in a POST body: InfluxDB 1.x reads `/query` from either, and URLs have limits.
        `compressed=False` asks InfluxDB not to gzip its answer: over loopback, compressing a
        large answer there and inflating it here costs more time than the bytes it saves.
        `packed=True` asks for the answer in MessagePack, uncompressed: for answers of thousands
        of rows, which InfluxDB writes with less CPU that way. Values are then as MessagePack
        has them (a float stays a float where JSON would write `5`): callers convert.
        """
        text = q if isinstance(q, str) else ";\n".join(q)
        form: dict[str, str] = {"q": text, "epoch": "ns"}
        if database:
            form["db"] = self.config.database
        if params:
            form["params"] = orjson.dumps(params).decode()
        encoded = urlencode(form)
        asked = _PACKED if packed else None if compressed else _IDENTITY
        try:
            if write or len(encoded) > MAX_URL_QUERY_BYTES:
                headers = {**_FORM, **asked} if asked else _FORM
                response = await self._http.post("/query", content=encoded, headers=headers)
            else:
                response = await self._http.get(f"/query?{encoded}", headers=asked)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise InfluxUnavailable(f"querying InfluxDB failed: {exc!r}") from exc
        raise_for_status(response, "query")
        results = parse_results(response.content, packed=_is_packed(response))
        expected = 1 if isinstance(q, str) else len(q)
        if len(results) < expected or (not isinstance(q, str) and len(results) != expected):
            raise InfluxBadAnswer(
                f"InfluxDB answered {len(results)} results to {expected} statement(s)"
            )
        return results

    async def execute(self, statements: Sequence[str]) -> None:
        """Run statements that change things (CREATE, ALTER, DROP)."""
        for statement in statements:
            await self.query(statement, write=True, database=False)


__all__ = [
    "MAX_URL_QUERY_BYTES",
    "InfluxClient",
    "InfluxConfig",
    "InfluxError",
    "Series",
    "parse_results",
    "raise_for_status",
]
