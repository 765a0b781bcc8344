"""The MQTT source: a subscriber that holds each acknowledgement until we release it.

The session itself (connection, keep-alive, reconnecting, TLS, the codec) is `broker.Subscriber`;
this adds what the pipeline wants of it: a bounded buffer handed out in batches, and the
acknowledgements of what was stored. The broker never has more than `receive_maximum`
unacknowledged messages out to us (MQTT 5 flow control), so the buffer here is bounded by
construction: while storage is slow, the backlog waits in the broker.

A source made with `leave=True` retires a worker's session for good (scale-down): it resumes the
session, unsubscribes instead of subscribing, hands out what the session still holds, and
`end_session()` then has the broker delete the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType

from broker import SESSION_TAKEN_OVER, BrokerConfig, Delivery, Subscriber
from ingest.errors import BrokerRefused, SourceClosed

log = logging.getLogger(__name__)

__all__ = ["BrokerConfig", "Delivery", "MqttSource"]


class MqttSource:
    """Delivers messages of some subscriptions in batches; acknowledges on request.

    Lifecycle: `async with` connects and subscribes (and reconnects, resuming the session,
    whenever the connection is lost); `batch()` returns deliveries until `close()` is called,
    after which it drains what was buffered and then raises SourceClosed.

    With `leave=True` it unsubscribes from `subscriptions` on every connection instead, so the
    broker routes nothing new to the session and only what the session holds arrives;
    `quiet_for()` tells when that is all stored and acknowledged, and `end_session()` leaves
    and deletes the session. A leaving source that finds another client using its id (the
    worker was not stopped), or loses its connection, gives up rather than fight over the
    session.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        client_id: str,
        subscriptions: Sequence[str],
        *,
        receive_maximum: int = 10_000,
        leave: bool = False,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.receive_maximum = max(1, min(receive_maximum, 65_535))
        self.leave = leave
        self._session = Subscriber(
            broker,
            client_id,
            self.subscriptions,
            receive_maximum=self.receive_maximum,
            on_messages=self._deliver,
            on_lost=self._lost,
            unsubscribe=leave,
            retry=not leave,
            explain_loss=self._explain_loss,
        )
        self._buffer: deque[Delivery] = deque()
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = 1
        # Deliveries since start, all connections, and the acknowledged ones. A lost
        # connection's unacknowledged deliveries go back to the broker (they come again), so
        # they leave `received` too: `received - acked` is what we hold right now.
        self.received = 0
        self.acked = 0
        self._held = 0  # deliveries of the current connection not yet acknowledged
        # Leaving only: when anything last arrived, was acknowledged or unsubscribed.
        self._last_activity = time.monotonic()
        self.session_ended = False

    @property
    def connected(self) -> bool:
        """Whether a connection stands and the broker let us in."""
        return self._session.connected

    @property
    def refused(self) -> BrokerRefused | None:
        """Why the broker turned us away, if it did."""
        refused = self._session.refused
        return None if refused is None else BrokerRefused(str(refused))

    async def __aenter__(self) -> MqttSource:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def open(self, timeout_s: float = 15.0) -> None:
        """Connect (resuming our session) and subscribe; returns once the broker confirmed both.

        Raises BrokerRefused when turned away or when no answer comes within `timeout_s`.
        """
        self._session.start()
        try:
            async with asyncio.timeout(timeout_s):
                await self._session.ready.wait()
        except TimeoutError:
            await self.aclose()
            raise BrokerRefused(
                f"no answer from the broker at [{self.broker.host}]:"
                f"{self.broker.port} within {timeout_s:.0f} s"
            ) from None
        refused = self.refused
        if refused is not None:
            await self.aclose()
            raise refused
        self._last_activity = time.monotonic()

    def _explain_loss(self, why: str | None, code: int | None) -> str:
        # Most likely the worker we retire is still running and took its session back
        # (Mosquitto 2.0.11 just closes the connection then; newer brokers say 0x8E).
        # Reconnecting would fight it for the session and make it resubscribe each time,
        # so give up: the session stays, without subscriptions, for another attempt.
        taken = code == SESSION_TAKEN_OVER
        self.close()
        return (
            f"{self.client_id} lost the broker while leaving ("
            + ("another client connected with its id" if taken else why or "closed")
            + "): if that worker still runs, stop it, then leave again; its session is "
            "kept, without subscriptions"
        )

    def _lost(self, _generation: int) -> None:
        """The connection is gone: what it delivered can no longer be acknowledged."""
        # Unacknowledged messages of the lost connection come back on the next one; acking
        # them by their old packet ids could acknowledge other messages, so forget them.
        self._buffer.clear()
        self.received -= self._held
        self._held = 0
        if self._session.refused is not None and self.leave:
            self.close()
        if not self._closed and not self._session.closed:
            log.warning("%s lost the broker; reconnecting", self.client_id)

    def _deliver(self, deliveries: list[Delivery]) -> None:
        """Called by the session with what one socket read held."""
        if self._closed:
            return  # left unacknowledged: the broker hands them out again
        self._buffer.extend(deliveries)
        self.received += len(deliveries)
        self._held += len(deliveries)
        if self.leave:
            self._last_activity = time.monotonic()
        waiter = self._waiter
        if waiter is not None and len(self._buffer) >= self._wanted and not waiter.done():
            waiter.set_result(None)

    # -- the pipeline's side ---------------------------------------------------------------------

    async def _wait(self, wanted: int, timeout_s: float | None) -> bool:
        """Wait until `wanted` deliveries are buffered or the source closes; False on timeout."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiter, self._wanted = waiter, wanted
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True

    async def batch(self, max_messages: int, max_wait_s: float) -> list[Delivery]:
        """Up to `max_messages` deliveries, waiting at most `max_wait_s` after the first one."""
        buffer = self._buffer
        while not buffer:
            if self._closed:
                raise SourceClosed("the source was closed and is drained")
            await self._wait(1, None)
        deadline = time.monotonic() + max_wait_s
        while len(buffer) < max_messages and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await self._wait(max_messages, remaining):
                break
        popleft = buffer.popleft
        return [popleft() for _ in range(min(max_messages, len(buffer)))]

    def ack(self, deliveries: Sequence[Delivery]) -> int:
        """Acknowledge deliveries of the current connection; returns how many were acked."""
        session = self._session
        if session.protocol is None:
            return 0
        generation = session.generation
        # One pass: QoS 0 deliveries carry packet id 0, settled too but never acknowledged.
        mids = [d.mid for d in deliveries if d.generation == generation]
        settled = len(mids)
        if 0 in mids:
            mids = [mid for mid in mids if mid]
        session.ack(mids)
        self.acked += settled
        self._held -= settled
        if self.leave:
            self._last_activity = time.monotonic()
        return len(mids)

    def quiet_for(self) -> float:
        """Leaving: seconds nothing arrived or was acknowledged, once all is acknowledged.

        0 while not connected, not yet unsubscribed, or holding a delivery not acknowledged.
        After the UNSUBACK the broker only sends what the session holds, and it sends more as
        soon as our acknowledgements make room (Receive Maximum): so a quiet second or two
        after the last acknowledgement means the session is empty.
        """
        if not (self.leave and self.connected and self._session.ready.is_set()) or self._held:
            return 0.0
        return time.monotonic() - self._last_activity

    def end_session(self, linger_s: float = 3.0) -> bool:
        """Leave with Session Expiry Interval 0: the broker deletes the session and its queue.

        Call it only when `quiet_for()` says the session is drained. Returns False (and sends
        nothing) when there is no connection to send it on. The source is closed afterwards.
        """
        session = self._session
        if session.protocol is None or session.protocol.transport is None:
            return False
        if session.disconnecting:
            return False
        self.close()
        session.disconnect(linger_s, session_expiry_s=0)
        self.session_ended = True
        return True

    def close(self) -> None:
        """Stop handing out new messages once the buffer is drained (`batch` then raises)."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def disconnect(self, linger_s: float = 3.0) -> None:
        """Leave the broker, keeping the session; unacknowledged messages will come back."""
        self.close()
        self._session.disconnect(linger_s)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """`disconnect`, then wait until the connection is closed (acks flushed)."""
        self.disconnect()
        await self._session.wait_closed(timeout_s)
