"""The MQTT source: a paho-mqtt client that holds each acknowledgement until we release it.

paho runs its network loop in a thread of its own; messages are handed to asyncio in batches.
The broker never has more than `receive_maximum` unacknowledged messages out to us (MQTT 5
flow control), so the buffer here is bounded by construction: while storage is slow, the
backlog waits in the broker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.errors import BrokerRefused, SourceClosed

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """How to reach the broker and who we are there."""

    host: str = "::1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the broker delivered it; `generation` counts connections."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_ns: int


class MqttSource:
    """Delivers messages of some subscriptions in batches; acknowledges on request.

    Lifecycle: `async with` connects and subscribes; `batch()` returns deliveries until
    `close()` is called, after which it drains what was buffered and then raises SourceClosed.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        client_id: str,
        subscriptions: Sequence[str],
        *,
        receive_maximum: int = 10_000,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.receive_maximum = max(1, min(receive_maximum, 65_535))
        self._buffer: deque[Delivery] = deque()
        self._lock = threading.Lock()
        self._generation = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._connected = asyncio.Event()
        self._refused: BrokerRefused | None = None
        self._wanted = 1
        self._subscribe_mid: int | None = None
        self.connected = False
        self.received = 0
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    async def __aenter__(self) -> MqttSource:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()

    async def open(self, timeout_s: float = 15.0) -> None:
        """Connect (resuming our session) and subscribe; returns once the broker confirmed both.

        Raises BrokerRefused when turned away or when no answer comes within `timeout_s`.
        """
        self._loop = asyncio.get_running_loop()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.broker.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self._client.connect_async(
            self.broker.host,
            self.broker.port,
            self.broker.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            self.disconnect()
            raise BrokerRefused(
                f"no answer from the broker at [{self.broker.host}]:"
                f"{self.broker.port} within {timeout_s:.0f} s"
            ) from None
        if self._refused is not None:
            self.disconnect()
            raise self._refused

    # -- paho's thread ---------------------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refused = BrokerRefused(f"the broker refused {self.client_id}: {reason}")
            log.error("%s", self._refused)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._connected.set)
            return
        with self._lock:
            self._generation += 1
        self.connected = True
        log.info("%s connected (session present: %s)", self.client_id, flags.session_present)
        _rc, self._subscribe_mid = client.subscribe([(sub, 1) for sub in self.subscriptions])

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        _props: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            self._refused = BrokerRefused(
                f"the broker refused the subscriptions of {self.client_id}: {', '.join(failed)}"
            )
            log.error("%s", self._refused)
        else:
            log.info("%s subscribed to %s", self.client_id, ", ".join(self.subscriptions))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.set)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self.connected = False
        with self._lock:
            # Unacknowledged messages of the lost connection come back on the next one; acking
            # them by their old packet ids could acknowledge other messages, so forget them.
            self._generation += 1
            self._buffer.clear()
        if not self._closed:
            log.warning("%s lost the broker: %s; reconnecting", self.client_id, reason)

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        if self._closed:
            return  # left unacknowledged: the broker hands it out again
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")  # noqa: SLF001
        delivery = Delivery(
            topic,
            bytes(message.payload),
            message.mid,
            message.qos,
            self._generation,
            time.time_ns(),
        )
        with self._lock:
            self._buffer.append(delivery)
            size = len(self._buffer)
            self.received += 1
        if size >= self._wanted and self._loop is not None:
            self._wanted = 1 << 62  # one wake-up per batch, not per message
            self._loop.call_soon_threadsafe(self._ready.set)

    # -- asyncio's side --------------------------------------------------------------------------

    async def batch(self, max_messages: int, max_wait_s: float) -> list[Delivery]:
        """Up to `max_messages` deliveries, waiting at most `max_wait_s` after the first one."""
        while True:
            with self._lock:
                if self._buffer:
                    break
                if self._closed:
                    raise SourceClosed("the source was closed and is drained")
                self._ready.clear()
                self._wanted = 1
            await self._ready.wait()
        deadline = time.monotonic() + max_wait_s
        while True:
            with self._lock:
                if len(self._buffer) >= max_messages or self._closed:
                    break
                self._ready.clear()
                self._wanted = max_messages
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await self._ready.wait()
            except TimeoutError:
                break
        with self._lock:
            count = min(max_messages, len(self._buffer))
            return [self._buffer.popleft() for _ in range(count)]

    def ack(self, deliveries: Sequence[Delivery]) -> int:
        """Acknowledge deliveries of the current connection; returns how many were acked."""
        done = 0
        generation = self._generation
        for delivery in deliveries:
            if delivery.qos > 0 and delivery.generation == generation:
                self._client.ack(delivery.mid, delivery.qos)
                done += 1
        return done

    def close(self) -> None:
        """Stop handing out new messages once the buffer is drained (`batch` then raises)."""
        self._closed = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._ready.set)

    def disconnect(self) -> None:
        """Leave the broker, keeping the session; unacknowledged messages will come back."""
        self._closed = True
        self._client.disconnect()
        self._client.loop_stop()
