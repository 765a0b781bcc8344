"""The MQTT source: a subscriber that holds each acknowledgement until we release it.

It runs on the event loop itself (`ingest.wire`), not in a thread: a socket read becomes a list
of deliveries at once, and a batch's PUBACKs go out in one write. The broker never has more
than `receive_maximum` unacknowledged messages out to us (MQTT 5 flow control), so the buffer
here is bounded by construction: while storage is slow, the backlog waits in the broker.

A source made with `leave=True` retires a worker's session for good (scale-down): it resumes the
session, unsubscribes instead of subscribing, hands out what the session still holds, and
`end_session()` then has the broker delete the session.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from ingest.errors import BrokerRefused, SourceClosed
from ingest.wire import (
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PROP_SERVER_KEEP_ALIVE,
    SESSION_TAKEN_OVER,
    Delivery,
    ProtocolBroken,
    SubscriberProtocol,
    connect_packet,
    disconnect_packet,
    puback_packets,
    reason_text,
)

log = logging.getLogger(__name__)

__all__ = ["BrokerConfig", "Delivery", "MqttSource"]

_SUBSCRIBE_MID = 1  # the only packet id we ever send (acks reuse the broker's ids)


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """How to reach the broker and who we are there."""

    host: str = "::1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400


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
        self._buffer: deque[Delivery] = deque()
        self._generation = 0
        self._closed = False
        self._protocol: SubscriberProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self._refused: BrokerRefused | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = 1
        self._disconnecting = False
        self.connected = False
        self.received = 0  # deliveries since start, all connections
        self.acked = 0
        self.leave = leave
        # Leaving only: whether this connection's UNSUBSCRIBE was confirmed, its deliveries not
        # yet acknowledged, and when anything last arrived, was acknowledged or unsubscribed.
        self._unsubscribed = False
        self._pending = 0
        self._last_activity = time.monotonic()
        self.session_ended = False

    @property
    def refused(self) -> BrokerRefused | None:
        """Why the broker turned us away, if it did."""
        return self._refused

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
        self._subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.client_id}")
        try:
            async with asyncio.timeout(timeout_s):
                await self._subscribed.wait()
        except TimeoutError:
            await self.aclose()
            raise BrokerRefused(
                f"no answer from the broker at [{self.broker.host}]:"
                f"{self.broker.port} within {timeout_s:.0f} s"
            ) from None
        if self._refused is not None:
            await self.aclose()
            raise self._refused

    # -- the connection --------------------------------------------------------------------------

    async def _run(self) -> None:
        """Keep a connection: connect, subscribe, and on loss reconnect with backoff (1-10 s)."""
        delay = 1.0
        while not self._closed:
            try:
                await self._session()
                delay = 1.0
            except BrokerRefused as exc:
                self._refused = exc
                log.error("%s", exc)  # noqa: TRY400 - a refusal, not a bug: no traceback
                if self._subscribed is not None:
                    self._subscribed.set()
                if self.leave:
                    self.close()  # a leaver does not retry: `refused` says why it stopped
            except (OSError, TimeoutError, ProtocolBroken) as exc:
                if not self._closed:
                    log.warning("%s cannot reach the broker: %s", self.client_id, exc)
            finally:
                self._lost(self._generation)
            if self._closed:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            delay = min(delay * 2, 10.0)

    async def _session(self) -> None:
        """One connection, from CONNECT until it is lost (returns) or refused (raises)."""
        loop = asyncio.get_running_loop()
        keepalive = self.broker.keepalive_s
        # Every connection gets a generation of its own: packet ids are only meaningful on the
        # connection that delivered them, and an ack must never reach another one.
        self._generation += 1
        generation = self._generation
        async with asyncio.timeout(max(keepalive, 5)):
            _, protocol = await loop.create_connection(
                lambda: SubscriberProtocol(generation, self._deliver, self._lost),
                self.broker.host,
                self.broker.port,
            )
            self._protocol = protocol
            protocol.send(
                connect_packet(
                    self.client_id,
                    keepalive,
                    session_expiry_s=self.broker.session_expiry_s,
                    receive_maximum=self.receive_maximum,
                    username=self.broker.username,
                    password=self.broker.password,
                )
            )
            connack = await protocol.connack
            if connack.reason >= 0x80:
                protocol.abort("refused")
                raise BrokerRefused(
                    f"the broker refused {self.client_id}: {reason_text(connack.reason)}"
                )
            server_keepalive = connack.properties.get(PROP_SERVER_KEEP_ALIVE)
            if isinstance(server_keepalive, int) and server_keepalive > 0:
                keepalive = server_keepalive  # MQTT 5: the server's value binds us
            self.connected = True
            log.info("%s connected (session present: %s)", self.client_id, connack.session_present)
            if self.leave:
                # Messages queued in the session arrive from here on; UNSUBSCRIBE only stops
                # new ones being routed to us. Repeated on a reconnect, it answers 0x11.
                protocol.unsubscribe(_SUBSCRIBE_MID, self.subscriptions)
                reasons = await protocol.unsuback
            else:
                protocol.subscribe(_SUBSCRIBE_MID, self.subscriptions)
                reasons = await protocol.suback
        failed = [reason_text(r) for r in reasons if r >= 0x80]
        if failed:
            protocol.abort("subscription refused")
            raise BrokerRefused(
                f"the broker refused to {'un' if self.leave else ''}subscribe {self.client_id}: "
                f"{', '.join(failed)}"
            )
        if self.leave:
            self._unsubscribed = True
            self._last_activity = time.monotonic()
            log.info("%s unsubscribed from %s", self.client_id, ", ".join(self.subscriptions))
        else:
            log.info("%s subscribed to %s", self.client_id, ", ".join(self.subscriptions))
        if self._subscribed is not None:
            self._subscribed.set()
        await self._keep_alive(protocol, keepalive)

    async def _keep_alive(self, protocol: SubscriberProtocol, keepalive_s: int) -> None:
        """Ping when quiet, and drop a connection the broker stopped answering on."""
        every = max(0.5, keepalive_s / 2)
        while not protocol.lost.done():
            await asyncio.wait([protocol.lost], timeout=every)
            now = time.monotonic()
            if now - protocol.last_received > keepalive_s * 1.5:
                protocol.abort(f"no packet from the broker for {keepalive_s * 1.5:.0f} s")
            elif self._disconnecting:
                pass  # nothing may follow DISCONNECT; the broker is closing the connection
            elif now - protocol.last_sent >= every or now - protocol.last_received >= every:
                protocol.send(PINGREQ_PACKET)
        why = protocol.lost.result()
        if self._closed:
            return
        if self.leave:
            # Most likely the worker we retire is still running and took its session back
            # (Mosquitto 2.0.11 just closes the connection then; newer brokers say 0x8E).
            # Reconnecting would fight it for the session and make it resubscribe each time,
            # so give up: the session stays, without subscriptions, for another attempt.
            taken = protocol.disconnect_code == SESSION_TAKEN_OVER
            raise BrokerRefused(
                f"{self.client_id} lost the broker while leaving ("
                + ("another client connected with its id" if taken else why or "closed")
                + "): if that worker still runs, stop it, then leave again; its session is "
                "kept, without subscriptions"
            )
        raise ConnectionError(why or "the broker closed the connection")

    def _lost(self, generation: int) -> None:
        """Forget connection `generation` (if current): its packet ids mean nothing any more.

        Called by the protocol the moment the socket closes, so that no ack is counted for a
        dead connection, and again when the session ends (then usually with nothing to do).
        """
        if generation != self._generation:
            return
        was = self.connected
        self.connected = False
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.abort("the session ended")  # e.g. no SUBACK in time: never leave it open
        # Unacknowledged messages of the lost connection come back on the next one; acking
        # them by their old packet ids could acknowledge other messages, so forget them.
        self._generation += 1
        self._buffer.clear()
        self._unsubscribed = False
        self._pending = 0
        if was and not self._closed:
            log.warning("%s lost the broker; reconnecting", self.client_id)

    def _deliver(self, deliveries: list[Delivery]) -> None:
        """Called by the protocol with what one socket read held."""
        if self._closed or deliveries[0].generation != self._generation:
            return  # left unacknowledged: the broker hands them out again
        self._buffer.extend(deliveries)
        self.received += len(deliveries)
        if self.leave:
            self._pending += len(deliveries)
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
        protocol = self._protocol
        if protocol is None:
            return 0
        generation = self._generation
        mids = [d.mid for d in deliveries if d.qos and d.generation == generation]
        protocol.send(puback_packets(mids))
        self.acked += len(mids)
        if self.leave:
            # QoS 0 deliveries need no PUBACK but count as settled once handed back here.
            self._pending -= sum(1 for d in deliveries if d.generation == generation)
            self._last_activity = time.monotonic()
        return len(mids)

    def quiet_for(self) -> float:
        """Leaving: seconds nothing arrived or was acknowledged, once all is acknowledged.

        0 while not connected, not yet unsubscribed, or holding a delivery not acknowledged.
        After the UNSUBACK the broker only sends what the session holds, and it sends more as
        soon as our acknowledgements make room (Receive Maximum): so a quiet second or two
        after the last acknowledgement means the session is empty.
        """
        if not (self.leave and self.connected and self._unsubscribed) or self._pending:
            return 0.0
        return time.monotonic() - self._last_activity

    def end_session(self, linger_s: float = 3.0) -> bool:
        """Leave with Session Expiry Interval 0: the broker deletes the session and its queue.

        Call it only when `quiet_for()` says the session is drained. Returns False (and sends
        nothing) when there is no connection to send it on. The source is closed afterwards.
        """
        protocol = self._protocol
        if protocol is None or protocol.transport is None or self._disconnecting:
            return False
        self._send_disconnect(protocol, disconnect_packet(session_expiry_s=0), linger_s)
        self.session_ended = True
        return True

    def close(self) -> None:
        """Stop handing out new messages once the buffer is drained (`batch` then raises)."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def disconnect(self, linger_s: float = 3.0) -> None:
        """Leave the broker, keeping the session; unacknowledged messages will come back.

        We send DISCONNECT and let the broker close the connection: Mosquitto reads one packet
        per wake-up and drops a connection whose peer has closed without reading the rest, so
        closing our end at once loses the PUBACKs of the last batch (they come back as
        duplicates). After `linger_s` seconds we close it ourselves.
        """
        self.close()
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            if not self._disconnecting:
                self._send_disconnect(protocol, DISCONNECT_PACKET, linger_s)
        elif self._task is not None:
            self._task.cancel()  # connecting or waiting to reconnect: nothing to flush

    def _send_disconnect(
        self, protocol: SubscriberProtocol, packet: bytes, linger_s: float
    ) -> None:
        """Close the source, send `packet` (a DISCONNECT) and close our end after `linger_s`."""
        self.close()
        transport = protocol.transport
        assert transport is not None
        self._disconnecting = True
        protocol.send(packet)
        try:
            asyncio.get_running_loop().call_later(linger_s, transport.close)
        except RuntimeError:  # no loop runs any more: nobody would read the answer
            transport.close()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """`disconnect`, then wait until the connection is closed (acks flushed)."""
        self.disconnect()
        task = self._task
        if task is None:
            return
        await asyncio.wait([task], timeout=timeout_s)
        if not task.done():
            task.cancel()
            log.warning("%s: the broker connection did not close in time", self.client_id)
            await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: the connection task failed", self.client_id, exc_info=task.exception())
