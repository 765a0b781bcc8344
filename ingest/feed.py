"""What the pipeline needs of its message source, as Protocols (MqttSource is the real one).

`Source` is what a `Worker` uses: batches in, acknowledgements out. `Session` adds the rest of
MqttSource's public surface, which running and retiring a worker use: connecting, leaving, and
ending the broker session. Tests hand the worker in-memory fakes of `Source`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ingest.errors import BrokerRefused
from ingest.source import Delivery


class Source(Protocol):
    """Hands out deliveries in batches until closed; acknowledges them on request.

    `batch` raises SourceClosed once `close()` was called and everything buffered was handed
    out. `received` and `acked` count deliveries since the start (for /metrics).
    """

    @property
    def received(self) -> int:
        """Deliveries handed to us by the broker, over all connections."""
        ...

    @property
    def acked(self) -> int:
        """Deliveries acknowledged to the broker."""
        ...

    async def batch(self, max_messages: int, max_wait_s: float, /) -> list[Delivery]:
        """Up to `max_messages` deliveries, waiting at most `max_wait_s` after the first."""
        ...

    def ack(self, deliveries: Sequence[Delivery], /) -> int:
        """Acknowledge deliveries (those of the current connection); returns how many."""
        ...

    def close(self) -> None:
        """Hand out what is buffered, then end `batch`."""
        ...


class Session(Source, Protocol):
    """A Source with its broker session: open, leave, end (see ingest.source.MqttSource)."""

    @property
    def refused(self) -> BrokerRefused | None:
        """Why the broker turned us away, if it did."""
        ...

    @property
    def session_ended(self) -> bool:
        """Whether `end_session` had the broker delete the session."""
        ...

    async def open(self) -> None:
        """Connect and subscribe; raises BrokerRefused when turned away."""
        ...

    def quiet_for(self) -> float:
        """Leaving: seconds nothing arrived or was acknowledged, once all is acknowledged."""
        ...

    def end_session(self) -> bool:
        """Leave, having the broker delete the session; False when not connected."""
        ...

    def disconnect(self) -> None:
        """Leave the broker, keeping the session."""
        ...

    async def aclose(self) -> None:
        """`disconnect`, then wait until the connection is closed."""
        ...
