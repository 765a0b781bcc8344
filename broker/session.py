"""A persistent MQTT 5 subscriber session on asyncio, holding every acknowledgement for us.

One connection is a `SubscriberProtocol`: it frames what arrives (`broker.codec.Framer`), hands
PUBLISHes on in bulk as `Delivery` tuples and writes many PUBACKs in one write. A `Subscriber`
keeps such a connection: connect (resuming the session), check the CONNACK and SUBACK, ping
and notice a silent broker, and reconnect with backoff when the connection is lost. Packet ids
mean something only on the connection that delivered them, so every connection has a
generation and an acknowledgement reaches only its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import mqtt5

from broker.codec import (
    MAX_PACKET_SIZE,
    PINGREQ,
    Framer,
    KeepAlive,
    connect_packet,
    disconnect_packet,
    puback_packets,
    reason_text,
    subscribe_packet,
    subscription_failures,
    unsubscribe_packet,
)
from broker.errors import BrokerRefused, BrokerUnreachable, ProtocolBroken

log = logging.getLogger(__name__)

_SUBSCRIBE_MID = 1  # the only packet id we ever send (acks reuse the broker's ids)
_PUBLISH = mqtt5.PublishPacket
_EXACTLY_ONCE = mqtt5.QoS.EXACTLY_ONCE


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """How to reach the broker and who we are there (`tls`: None for plain MQTT)."""

    host: str = "::1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    max_packet_size: int = MAX_PACKET_SIZE  # bytes; larger packets end the connection (0x95)


class Delivery(NamedTuple):
    """One message as the broker delivered it; `generation` counts connections.

    A named tuple rather than a frozen dataclass: it is made once per message, and a frozen
    dataclass costs about four times as much to construct.
    """

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_ns: int


class SubscriberProtocol(asyncio.Protocol):
    """One connection to the broker: frames packets, hands PUBLISHes to `on_messages` in bulk.

    Lifecycle: created by `loop.create_connection`; `connack`, `suback` and `unsuback` resolve as
    the broker answers; `lost` resolves (with the reason, or None) and `on_lost(generation)` is
    called at once when the connection is gone. Bytes MQTT 5 forbids get a DISCONNECT with the
    reason (0x81 malformed, 0x95 too large) before the connection is dropped. It never
    reconnects; the owner makes a new one.
    """

    def __init__(
        self,
        generation: int,
        on_messages: Callable[[list[Delivery]], None],
        on_lost: Callable[[int], None] | None = None,
        *,
        max_packet_size: int = MAX_PACKET_SIZE,
        keepalive_s: float = 0,
    ) -> None:
        self.generation = generation
        self._on_messages = on_messages
        self._on_lost = on_lost
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[mqtt5.ConnAckPacket] = loop.create_future()
        self.suback: asyncio.Future[list[int]] = loop.create_future()
        self.unsuback: asyncio.Future[list[int]] = loop.create_future()
        self.lost: asyncio.Future[str | None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.framer = Framer(max_packet_size)
        self.keepalive = KeepAlive(keepalive_s)
        self._suback_mid = -1
        self._unsuback_mid = -1
        self.disconnect_reason: str | None = None
        self.disconnect_code: int | None = None  # the reason of the broker's DISCONNECT, if any

    # -- asyncio's callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        why = self.disconnect_reason or (repr(exc) if exc is not None else None)
        for waiter in (self.connack, self.suback, self.unsuback):
            if not waiter.done():
                waiter.set_exception(BrokerUnreachable(why or "the broker closed the connection"))
                waiter.exception()  # retrieved here: nobody may be waiting any more
        if not self.lost.done():
            self.lost.set_result(why)
        if self._on_lost is not None:
            self._on_lost(self.generation)

    def data_received(self, data: bytes) -> None:
        self.keepalive.received(time.monotonic())
        now_ns = time.time_ns()  # one socket read arrived at one moment
        generation = self.generation
        messages: list[Delivery] = []
        try:
            self._read(self.framer.feed(data), messages, generation, now_ns)
        except ProtocolBroken as exc:
            self.refuse(exc)
            return
        if messages:
            self._on_messages(messages)

    def _read(
        self,
        packets: Iterator[mqtt5.Packet],
        messages: list[Delivery],
        generation: int,
        now_ns: int,
    ) -> None:
        for packet in packets:
            if type(packet) is _PUBLISH:
                # QoS as a plain int from the packet id (only QoS 0 has none): mqtt5's QoS
                # objects are all truthy, and `if delivery.qos` decides whether to PUBACK.
                mid = packet.packet_id
                if mid is None:
                    messages.append(
                        Delivery(packet.topic, packet.payload, 0, 0, generation, now_ns)
                    )
                    continue
                if packet.qos is _EXACTLY_ONCE:  # mqtt5's QoS values are singletons
                    raise ProtocolBroken("QoS 2 PUBLISH on a QoS 1 subscription", 0x82)
                messages.append(Delivery(packet.topic, packet.payload, mid, 1, generation, now_ns))
            else:
                self._control(packet)

    # -- sending ---------------------------------------------------------------------------------

    def send(self, packet: bytes) -> None:
        """Write a packet (or several); dropped silently once the connection is gone."""
        if self.transport is not None and packet:
            self.transport.write(packet)
            self.keepalive.last_sent = time.monotonic()

    def subscribe(self, mid: int, filters: Sequence[str]) -> None:
        """Send SUBSCRIBE at QoS 1; `suback` resolves with the reason codes."""
        self._suback_mid = mid
        self.send(subscribe_packet(mid, filters, 1))

    def unsubscribe(self, mid: int, filters: Sequence[str]) -> None:
        """Send UNSUBSCRIBE; `unsuback` resolves with the reason codes."""
        self._unsuback_mid = mid
        self.send(unsubscribe_packet(mid, filters))

    def abort(self, why: str) -> None:
        """Drop the connection at once (nothing more is read or written)."""
        self.disconnect_reason = self.disconnect_reason or why
        if self.transport is not None:
            self.transport.abort()

    def refuse(self, error: ProtocolBroken) -> None:
        """Tell the broker why (DISCONNECT with the error's reason code), then drop."""
        log.warning("protocol error from the broker: %s", error)
        self.send(disconnect_packet(error.reason_code))
        transport = self.transport
        self.disconnect_reason = self.disconnect_reason or f"protocol error: {error}"
        if transport is not None:
            transport.close()  # close, not abort: the DISCONNECT goes out first
            self.transport = None

    # -- the broker's answers --------------------------------------------------------------------

    def _control(self, packet: mqtt5.Packet) -> None:
        if isinstance(packet, mqtt5.PubAckPacket | mqtt5.PingRespPacket):
            return
        if isinstance(packet, mqtt5.ConnAckPacket):
            if not self.connack.done():
                self.connack.set_result(packet)
        elif isinstance(packet, mqtt5.SubAckPacket):
            if packet.packet_id == self._suback_mid and not self.suback.done():
                self.suback.set_result([int(code) for code in packet.reason_codes])
        elif isinstance(packet, mqtt5.UnsubAckPacket):
            if packet.packet_id == self._unsuback_mid and not self.unsuback.done():
                self.unsuback.set_result([int(code) for code in packet.reason_codes])
        elif isinstance(packet, mqtt5.DisconnectPacket):
            code = int(packet.reason_code)
            self.disconnect_code = code
            text = reason_text(code, packet.reason_str)
            self.disconnect_reason = f"the broker disconnected us: {text}"
        else:
            raise ProtocolBroken(f"unexpected {type(packet).__name__} from the broker", 0x82)


class Subscriber:
    """A persistent session that subscribes (or, leaving, unsubscribes) and reconnects.

    Lifecycle: `start()` runs the connection task; `ready` is set once the broker confirmed
    the (un)subscription, or `refused` says why it turned us away. Deliveries go to
    `on_messages`; when a connection is lost `on_lost(generation)` is called at once (its
    deliveries can no longer be acknowledged). `retry=False` gives up after the first
    connection ends instead of reconnecting: `refused` then explains, via `explain_loss`.
    """

    def __init__(
        self,
        config: BrokerConfig,
        client_id: str,
        filters: Sequence[str],
        *,
        receive_maximum: int,
        on_messages: Callable[[list[Delivery]], None],
        on_lost: Callable[[int], None],
        unsubscribe: bool = False,
        retry: bool = True,
        explain_loss: Callable[[str | None, int | None], str] | None = None,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.filters = list(filters)
        self.receive_maximum = receive_maximum
        self._on_messages = on_messages
        self._on_lost = on_lost
        self.unsubscribe = unsubscribe
        self.retry = retry
        self._explain_loss = explain_loss
        self.generation = 0
        self.protocol: SubscriberProtocol | None = None
        self.ready = asyncio.Event()
        self.refused: BrokerRefused | None = None
        self.connected = False
        self.closed = False
        self.disconnecting = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start connecting (in a task of the running loop)."""
        self.task = asyncio.create_task(self._run(), name=f"mqtt-{self.client_id}")

    async def _run(self) -> None:
        """Keep a connection: connect, subscribe, and on loss reconnect with backoff (1-10 s)."""
        delay = 1.0
        while not self.closed:
            try:
                await self._connection()
                delay = 1.0
            except BrokerRefused as exc:
                self.refused = exc
                log.error("%s", exc)  # noqa: TRY400 - a refusal, not a bug: no traceback
                self.ready.set()
                if not self.retry:
                    self.closed = True
            except (OSError, TimeoutError, BrokerUnreachable, ProtocolBroken) as exc:
                if not self.closed:
                    log.warning("%s cannot reach the broker: %s", self.client_id, exc)
            finally:
                self.lose(self.generation)
            if self.closed:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            delay = min(delay * 2, 10.0)

    async def _connection(self) -> None:
        """One connection, from CONNECT until it is lost (returns) or refused (raises)."""
        loop = asyncio.get_running_loop()
        config = self.config
        keepalive = config.keepalive_s
        self.generation += 1
        generation = self.generation
        async with asyncio.timeout(max(keepalive, 5)):
            try:
                _, protocol = await self._connect(loop, generation, keepalive)
            except ssl.SSLCertVerificationError as exc:
                raise BrokerRefused(
                    f"{self.client_id} does not trust the broker at [{config.host}]:"
                    f"{config.port}: {exc}"
                ) from None
            self.protocol = protocol
            protocol.send(
                connect_packet(
                    self.client_id,
                    keepalive,
                    session_expiry_s=config.session_expiry_s,
                    receive_maximum=self.receive_maximum,
                    max_packet_size=config.max_packet_size,
                    username=config.username,
                    password=config.password,
                )
            )
            connack = await protocol.connack
            code = int(connack.reason_code)
            if code >= 0x80:
                protocol.abort("refused")
                raise BrokerRefused(
                    f"the broker refused {self.client_id}: {reason_text(code, connack.reason_str)}",
                    code,
                )
            if connack.server_keep_alive:
                keepalive = connack.server_keep_alive  # MQTT 5: the server's value binds us
                protocol.keepalive.interval_s = keepalive
            self.connected = True
            log.info("%s connected (session present: %s)", self.client_id, connack.session_present)
            if self.unsubscribe:
                # Messages queued in the session arrive from here on; UNSUBSCRIBE only stops
                # new ones being routed to us. Repeated on a reconnect, it answers 0x11.
                protocol.unsubscribe(_SUBSCRIBE_MID, self.filters)
                reasons = await protocol.unsuback
                failed = [reason_text(r) for r in reasons if r >= 0x80]
            else:
                protocol.subscribe(_SUBSCRIBE_MID, self.filters)
                reasons = await protocol.suback
                failed = subscription_failures(reasons, 1)
        if failed:
            protocol.abort("subscription refused")
            raise BrokerRefused(
                f"the broker refused to {'un' if self.unsubscribe else ''}subscribe "
                f"{self.client_id}: {', '.join(failed)}",
                max(reasons),
            )
        verb = "unsubscribed from" if self.unsubscribe else "subscribed to"
        log.info("%s %s %s", self.client_id, verb, ", ".join(self.filters))
        self.ready.set()
        await self._keep_alive(protocol)

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, generation: int, keepalive_s: int
    ) -> tuple[asyncio.BaseTransport, SubscriberProtocol]:
        config = self.config
        return await loop.create_connection(
            lambda: SubscriberProtocol(
                generation,
                self._deliver,
                self.lose,
                max_packet_size=config.max_packet_size,
                keepalive_s=keepalive_s,
            ),
            config.host,
            config.port,
            ssl=config.tls,
            server_hostname=config.host if config.tls is not None else None,
        )

    async def _keep_alive(self, protocol: SubscriberProtocol) -> None:
        """Ping when quiet, and drop a connection the broker stopped answering on."""
        keepalive = protocol.keepalive
        while not protocol.lost.done():
            await asyncio.wait([protocol.lost], timeout=max(0.25, keepalive.interval_s / 8))
            if protocol.lost.done() or self.disconnecting:
                continue  # nothing may follow DISCONNECT; the broker is closing the connection
            todo = keepalive.due(time.monotonic())
            if todo == "ping":
                protocol.send(PINGREQ)
            elif todo == "dead":
                protocol.abort(
                    f"no answer from the broker within {keepalive.interval_s:.0f} s of a ping"
                )
        why = protocol.lost.result()
        if self.closed:
            return
        if not self.retry:
            explain = self._explain_loss
            text = explain(why, protocol.disconnect_code) if explain else why or "closed"
            raise BrokerRefused(text)
        raise BrokerUnreachable(why or "the broker closed the connection")

    def lose(self, generation: int) -> None:
        """Forget connection `generation` (if current): its packet ids mean nothing any more."""
        if generation != self.generation:
            return
        protocol, self.protocol = self.protocol, None
        had = self.connected or protocol is not None
        self.connected = False
        if protocol is not None and protocol.transport is not None:
            protocol.abort("the session ended")  # e.g. no SUBACK in time: never leave it open
        self.generation += 1
        if had:  # called again when the connection task ends: nothing new to report then
            self._on_lost(generation)

    def _deliver(self, deliveries: list[Delivery]) -> None:
        if self.closed or deliveries[0].generation != self.generation:
            return  # left unacknowledged: the broker hands them out again
        self._on_messages(deliveries)

    def ack(self, mids: Sequence[int]) -> bool:
        """Send PUBACKs for packet ids of the current connection; False if there is none."""
        protocol = self.protocol
        if protocol is None:
            return False
        protocol.send(puback_packets(mids))
        return True

    def disconnect(self, linger_s: float, *, session_expiry_s: int | None = None) -> bool:
        """Send DISCONNECT and close our end after `linger_s`; False without a connection.

        We let the broker close the connection: Mosquitto reads one packet per wake-up and
        drops a connection whose peer has closed without reading the rest, so closing our end
        at once loses the PUBACKs sent just before (they come back as duplicates).
        """
        self.closed = True
        if self.disconnecting:
            return False
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            if self.task is not None:
                self.task.cancel()  # connecting or waiting to reconnect: nothing to flush
            return False
        transport = protocol.transport
        self.disconnecting = True
        protocol.send(disconnect_packet(session_expiry_s=session_expiry_s))
        try:
            asyncio.get_running_loop().call_later(linger_s, transport.close)
        except RuntimeError:  # no loop runs any more: nobody would read the answer
            transport.close()
        return True

    async def wait_closed(self, timeout_s: float) -> None:
        """Wait for the connection task to end (cancelling it after `timeout_s`)."""
        task = self.task
        if task is None:
            return
        await asyncio.wait([task], timeout=timeout_s)
        if not task.done():
            task.cancel()
            log.warning("%s: the broker connection did not close in time", self.client_id)
            await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: the connection task failed", self.client_id, exc_info=task.exception())
