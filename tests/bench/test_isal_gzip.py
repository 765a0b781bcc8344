"""bench.isal_gzip, the ISA-L gzip middleware measured against the app's: which answers are gzip'd,
for which clients, and that streams stay streams."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from bench.isal_gzip import GzipAnswers, accepts_gzip

pytestmark = pytest.mark.anyio

BIG = b'{"deviceId": "lamp-0001", "level": 1.5}\n' * 200  # 8 kB, compresses well
CHUNKS = [b"time,level\n" + b"2026-12-02T10:00:00Z,1.5\n" * 100 for _ in range(4)]


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, GZIP;Q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0, *", False),  # named, gzip's own weight counts, not the wildcard's
        ("*;q=0", False),
        ("identity", False),
        ("deflate, br", False),
        ("", False),
        ("gzip;q=lots", False),  # a weight we cannot read is no consent
    ],
)
def test_accept_encoding_is_read_with_its_weights(header: str, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


async def _stream() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        yield chunk


async def _events() -> AsyncIterator[bytes]:
    for n in range(3):
        yield f"data: {n}\n\n".encode() * 200


async def _route(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "big":
        return Response(BIG, media_type="application/json", headers={"Vary": "Accept"})
    if name == "small":
        return Response(b'{"status": "up"}', media_type="application/json")
    if name == "encoded":
        return Response(BIG, media_type="application/json", headers={"Content-Encoding": "br"})
    if name == "unchanged":
        return Response(status_code=304, headers={"ETag": '"x"'})
    if name == "png":
        return Response(BIG, media_type="image/png")
    if name == "stream":
        return StreamingResponse(_stream(), media_type="text/csv")
    return StreamingResponse(_events(), media_type="text/event-stream")


APP: ASGIApp = GzipAnswers(Starlette(routes=[Route("/{name}", _route)]), minimum_size=1024)


async def _answer(path: str, accept_encoding: str | None = "gzip") -> list[Message]:
    """The messages the middleware sends for a GET of `path`."""
    headers = [] if accept_encoding is None else [(b"accept-encoding", accept_encoding.encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
    }
    sent: list[Message] = []
    asked = anyio.Event()

    async def receive() -> Message:
        # The request once; then, as a client that stays, nothing until the answer is done.
        if asked.is_set():
            await anyio.sleep_forever()
        asked.set()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await APP(scope, receive, send)
    return sent


def _headers(messages: list[Message]) -> dict[str, str]:
    start = messages[0]
    assert start["type"] == "http.response.start"
    return {k.decode().lower(): v.decode() for k, v in start["headers"]}


def _body(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages[1:])


async def test_a_large_answer_is_gzipped_with_its_length_and_vary() -> None:
    sent = await _answer("/big", "deflate, gzip")
    headers = _headers(sent)
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept, Accept-Encoding"  # the route's own Vary kept
    body = _body(sent)
    assert int(headers["content-length"]) == len(body) < len(BIG) // 5
    assert gzip.decompress(body) == BIG  # the standard library reads ISA-L's gzip


@pytest.mark.parametrize("accept_encoding", ["gzip;q=0", "identity", None])
async def test_a_client_that_refuses_gzip_gets_the_plain_answer_with_vary(
    accept_encoding: str | None,
) -> None:
    sent = await _answer("/big", accept_encoding)
    headers = _headers(sent)
    assert "content-encoding" not in headers
    assert headers["vary"] == "Accept, Accept-Encoding"  # a cache must not serve it to others
    assert _body(sent) == BIG
    assert int(headers["content-length"]) == len(BIG)


@pytest.mark.parametrize("path", ["/small", "/encoded", "/unchanged", "/png"])
async def test_small_encoded_bodiless_and_compressed_media_pass_as_they_are(path: str) -> None:
    plain = await _answer(path, None)
    sent = await _answer(path, "gzip")
    assert sent == plain
    assert _headers(sent).get("content-encoding") in (None, "br")


async def test_a_stream_is_compressed_chunk_by_chunk_and_each_chunk_can_be_read_at_once() -> None:
    sent = await _answer("/stream")
    headers = _headers(sent)
    assert headers["content-encoding"] == "gzip"
    assert "content-length" not in headers
    assert headers["vary"] == "Accept-Encoding"
    bodies = [m["body"] for m in sent[1:]]
    assert len(bodies) == len(CHUNKS) + 1  # Starlette's empty closing message ends the gzip
    # What has arrived so far inflates to what was sent so far: nothing waits in a buffer.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for body, chunk in zip(bodies, CHUNKS, strict=False):
        assert inflater.decompress(body) == chunk
    assert inflater.decompress(bodies[-1]) == b""
    assert inflater.eof
    assert gzip.decompress(b"".join(bodies)) == b"".join(CHUNKS)


async def test_an_event_stream_is_never_compressed() -> None:
    sent = await _answer("/events")
    headers = _headers(sent)
    assert "content-encoding" not in headers
    assert "vary" not in headers
    assert _body(sent) == b"".join(f"data: {n}\n\n".encode() * 200 for n in range(3))


def test_isa_l_levels_only() -> None:
    with pytest.raises(ValueError, match="levels 0 to 3"):
        GzipAnswers(APP, level=5)
