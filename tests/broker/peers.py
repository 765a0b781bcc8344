"""paho-mqtt as the independent peer: an attacker, a device, or a stand-in ingest worker."""

from __future__ import annotations

import contextlib
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

WAIT_S = 5.0
# Every peer made, so that a test's teardown closes what the test left open.
OPEN: list[Peer] = []


@dataclass(frozen=True, slots=True)
class Listener:
    """One of the broker's listeners, as a client reaches it."""

    name: str
    host: str
    port: int
    ca_file: Path | None = None  # TLS when set

    @property
    def tls(self) -> bool:
        """Whether this listener speaks TLS."""
        return self.ca_file is not None


@dataclass
class Peer:
    """A paho client and what happened to it."""

    client: mqtt.Client
    connack: ReasonCode | None = None
    received: list[tuple[str, bytes]] = field(default_factory=list)
    suback: list[ReasonCode] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def refused(self) -> bool:
        """Whether the broker refused the connection (or never answered it)."""
        return self.connack is None or self.connack.is_failure

    def payloads(self) -> list[bytes]:
        """What arrived, in order."""
        with self.changed:
            return [p for _, p in self.received]

    def wait_for(self, payload: bytes, timeout_s: float = WAIT_S) -> bool:
        """Whether a message with `payload` arrived within `timeout_s`."""
        with self.changed:
            return self.changed.wait_for(
                lambda: payload in [p for _, p in self.received], timeout_s
            )

    def subscribe(self, *filters: str) -> list[ReasonCode]:
        """Subscribe at QoS 1; the SUBACK's reason codes."""
        done = threading.Event()
        codes: list[ReasonCode] = []

        def on_subscribe(
            c: mqtt.Client, u: object, mid: int, rcs: list[ReasonCode], p: object
        ) -> None:
            codes.extend(rcs)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe([(f, 1) for f in filters])
        assert done.wait(WAIT_S), "no SUBACK"
        return codes

    def publish(self, to: str, payload: bytes, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish at QoS 1 and wait (briefly) for the PUBACK."""
        info = self.client.publish(to, payload, qos=1, retain=retain)
        # When the connection went away the caller looks at what arrived.
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(WAIT_S)
        return info

    def close(self) -> None:
        """Disconnect (normally: no last will) and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def release(self) -> None:
        """Stop the network thread and close the socket, whatever state the peer is in."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def drop(self) -> None:
        """Vanish without DISCONNECT, as a crashed device does: the broker sends its will."""
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        self.client.loop_stop()


def connect(
    listener: Listener,
    username: str | None,
    password: str | None,
    *,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry_s: int = 0,
    will: tuple[str, bytes] | None = None,
    cert: tuple[Path, Path] | None = None,
    tls_version: ssl.TLSVersion | None = None,
) -> Peer:
    """Connect with MQTT 5 and wait for the CONNACK, successful or not."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id if client_id is not None else f"peer-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.enable_logger()
    if username is not None:
        client.username_pw_set(username, password)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    if listener.ca_file is not None:
        context = ssl.create_default_context(cafile=str(listener.ca_file))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        if tls_version is not None:
            context.minimum_version = tls_version
            context.maximum_version = tls_version
        client.tls_set_context(context)
    peer = Peer(client)
    OPEN.append(peer)
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: object, f: object, rc: ReasonCode, p: object) -> None:
        peer.connack = rc
        done.set()

    def on_disconnect(c: mqtt.Client, u: object, f: object, rc: ReasonCode, p: object) -> None:
        peer.disconnected.set()
        done.set()

    def on_message(c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
        with peer.changed:
            peer.received.append((message.topic, message.payload))
            peer.changed.notify_all()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = session_expiry_s
    try:
        client.connect(listener.host, listener.port, clean_start=clean_start, properties=properties)
    except (OSError, ssl.SSLError):
        return peer  # refused at the TLS handshake or the socket
    client.loop_start()
    done.wait(WAIT_S)
    if peer.refused:
        peer.release()
    return peer
