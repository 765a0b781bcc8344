"""Webhooks: each notice is one JSON POST, signed with HMAC-SHA256 over timestamp and body.

Headers (documented in README, "Alerts"):
- `X-Lantaarn-Timestamp`: seconds since the epoch when the request was signed;
- `X-Lantaarn-Signature`: `v1=` and the lowercase hex HMAC-SHA256, keyed with the shared
  secret, of the timestamp, a `.`, and the raw body bytes;
- `X-Lantaarn-Delivery`: the delivery's id (the same on every retry of it).
A receiver recomputes the signature and rejects requests older than a few minutes (replays).

A tenant's webhook (`guarded`) sends only to public addresses unless the platform allows
internal ones, each request pinned to the address checked (alerting.channels.address).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
import time
from collections.abc import Sequence

import httpx
import orjson

from alerting.channels.address import AddressRefused, Target, pinned
from alerting.channels.base import Notice, payload

PARALLEL = 8  # requests in flight at once to the receiver


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp` (s since the epoch)."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


class WebhookChannel:
    """POSTs every notice to one URL; any non-2xx answer or network error is a failure.

    `guarded`: the URL is a tenant's, so its host is resolved, checked (internal addresses
    only with `allow_internal`) and pinned before each batch; the platform's own webhook is
    configured by the platform's operator and sent to as it is.
    """

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        name: str = "webhook",
        guarded: bool = False,
        allow_internal: bool = False,
        tls: ssl.SSLContext | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self._tls = tls  # None: the system's trusted CAs
        self.url = url
        self._secret = secret
        self._guarded = guarded
        self._allow_internal = allow_internal
        self._timeout_s = timeout_s

    async def _target(self) -> Target:
        if not self._guarded:
            return Target(self.url)
        return await pinned(self.url, allow_internal=self._allow_internal)

    async def send(self, notices: Sequence[Notice]) -> list[str | None]:
        """Deliver each notice in its own request, `PARALLEL` at a time."""
        try:
            target = await self._target()
        except AddressRefused as exc:
            return [f"refused: {exc}"] * len(notices)
        gate = asyncio.Semaphore(PARALLEL)
        verify: ssl.SSLContext | bool = self._tls if self._tls is not None else True
        async with httpx.AsyncClient(timeout=self._timeout_s, verify=verify) as client:

            async def post(notice: Notice) -> str | None:
                body = orjson.dumps(payload(notice))
                stamp = int(time.time())
                headers = {
                    **target.headers,
                    "Content-Type": "application/json",
                    "X-Lantaarn-Timestamp": str(stamp),
                    "X-Lantaarn-Signature": sign(self._secret, stamp, body),
                    "X-Lantaarn-Delivery": str(notice.delivery_id),
                }
                async with gate:
                    try:
                        answer = await client.post(
                            target.url,
                            content=body,
                            headers=headers,
                            extensions=target.extensions,
                        )
                    except httpx.HTTPError as exc:
                        return f"{type(exc).__name__}: {exc}"
                return None if answer.is_success else f"HTTP {answer.status_code}"

            return list(await asyncio.gather(*(post(n) for n in notices)))
