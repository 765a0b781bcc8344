"""A gzip middleware with Intel's ISA-L (`isal`): the candidate bench/api_compression.py measures
against the app's Starlette GZipMiddleware (zlib, level 5). Not used by the app.

ISA-L compresses /v1/latest of 10,000 devices (2.3 MB of JSON) in under 2 ms of CPU where zlib
at level 5 takes 13-20 ms; but that is 3-4 % of what the API spends on the answer, and the
answer is a third to twice as large (bench/results/compression.md). Kept, tested, for the day
the compression is a larger share (tests/bench/test_isal_gzip.py); answers of the SensorThings
API already use ISA-L in the route (api/sta/routes.py).
"""

from __future__ import annotations

from typing import Final

from isal import isal_zlib
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_GZIP_WBITS: Final = 16 + isal_zlib.MAX_WBITS  # a gzip header and trailer around the deflate
# Already compressed, or a stream whose events must not wait in a compressor's buffer.
_SKIPPED_TYPES: Final = frozenset(
    {
        "text/event-stream",
        "application/gzip",
        "application/x-gzip",
        "application/zip",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "font/woff",
        "font/woff2",
    }
)
_SKIPPED_FAMILIES: Final = ("audio/", "video/")


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an `Accept-Encoding` value allows gzip (RFC 9110 12.5.3): `gzip` (or `x-gzip`)
    with a weight above 0, or else `*` with one; a weight we cannot read counts as 0."""
    named: float | None = None
    anything: float | None = None
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            named = weight if named is None else max(named, weight)
        elif coding == "*":
            anything = weight
    chosen = named if named is not None else anything
    return chosen is not None and chosen > 0


class GzipAnswers:
    """ASGI middleware: answers of `minimum_size` bytes or more gzip'd with ISA-L at `level`
    (0-3) for clients that accept gzip; `Vary: Accept-Encoding` on every answer it could have
    compressed, compressed or not.

    Left alone: answers already encoded, partial (206) and bodiless ones, event streams and
    already-compressed media types. A streamed answer is compressed chunk by chunk, each chunk
    flushed so that the client gets it without waiting for the next.
    """

    def __init__(self, app: ASGIApp, minimum_size: int = 1024, level: int = 1) -> None:
        if not isal_zlib.ISAL_BEST_SPEED <= level <= isal_zlib.ISAL_BEST_COMPRESSION:
            raise ValueError(f"ISA-L compresses at levels 0 to 3, not {level}")
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer through a responder that compresses what is worth it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = accepts_gzip(Headers(scope=scope).get("accept-encoding", ""))
        responder = _Responder(send, self.minimum_size, self.level if wanted else None)
        await self.app(scope, receive, responder.send)


class _Responder:
    """One answer's messages: the start is held until the first body shows what to do."""

    def __init__(self, send: Send, minimum_size: int, level: int | None) -> None:
        self._send = send
        self._minimum_size = minimum_size
        self._level = level  # None: the client does not accept gzip
        self._start: Message | None = None
        self._passing = False  # sent as the app gave it
        self._compressor: isal_zlib.Compress | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = Headers(raw=message.get("headers", []))
            status = int(message["status"])
            media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
            self._passing = (
                "content-encoding" in headers
                or status in (204, 206, 304)
                or status < 200
                or media_type in _SKIPPED_TYPES
                or media_type.startswith(_SKIPPED_FAMILIES)
            )
            if self._passing:
                await self._send(message)
            else:
                self._start = message
        elif kind != "http.response.body" or self._passing:
            if self._start is not None:  # a pathsend or trailers after a held start
                await self._send(self._start)
                self._start = None
            await self._send(message)
        elif self._start is not None:
            await self._first_body(self._start, message)
            self._start = None
        elif self._compressor is not None:
            await self._send(self._more(message))
        else:
            await self._send(message)

    async def _first_body(self, start: Message, message: Message) -> None:
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not more and len(body) < self._minimum_size:
            # Too small to be worth it, whatever the client accepts: no Vary either.
            await self._send(start)
            await self._send(message)
            return
        headers = MutableHeaders(raw=start.setdefault("headers", []))
        headers.add_vary_header("Accept-Encoding")
        if self._level is None:
            await self._send(start)
            await self._send(message)
            return
        headers["Content-Encoding"] = "gzip"
        if more:
            del headers["Content-Length"]
            self._compressor = isal_zlib.compressobj(self._level, isal_zlib.DEFLATED, _GZIP_WBITS)
            message = self._more(message)
        else:
            message = {**message, "body": isal_zlib.compress(body, self._level, _GZIP_WBITS)}
            headers["Content-Length"] = str(len(message["body"]))
        await self._send(start)
        await self._send(message)

    def _more(self, message: Message) -> Message:
        """A chunk of a streamed answer, compressed and flushed; the last one ends the gzip."""
        assert self._compressor is not None
        more = bool(message.get("more_body", False))
        data = self._compressor.compress(message.get("body", b""))
        data += self._compressor.flush(isal_zlib.Z_SYNC_FLUSH if more else isal_zlib.Z_FINISH)
        return {**message, "body": data}
