"""The broker from the outside: reachable (over TLS with the right certificate), and does it
really keep what an offline ingest worker's session is owed?

Uses paho-mqtt, a client that is not ours: the doctor must not share the mistakes of the session
layer it checks.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from lantaarn.doctor.config import BrokerTarget, ProbeConfig
from lantaarn.doctor.findings import Finding, Status

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
# What the shipped configuration must hold for an offline worker: more than Mosquitto's default.
DEFAULT_QUEUE_LIMIT = 1000
CERT_WARN_DAYS = 21


class ProbeFailed(Exception):
    """The broker refused or did not answer a step of a probe; the text says which."""


def tls_context(target: BrokerTarget) -> ssl.SSLContext:
    """The TLS context the platform's services use: the configured CA, host name checked."""
    context = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    if target.cert_file is not None:
        context.load_cert_chain(
            str(target.cert_file), str(target.key_file) if target.key_file else None
        )
    return context


def check_tls(target: BrokerTarget) -> list[Finding]:
    """A TLS handshake as a service would make it; the certificate's names and expiry."""
    check = "broker: TLS"
    if not target.tls:
        loopback = target.host in ("::1", "127.0.0.1", "localhost")
        if loopback:
            return [Finding(check, Status.OK, "plain MQTT on loopback (TLS not configured)")]
        return [
            Finding(
                check,
                Status.WARN,
                f"plain MQTT to {target.host}: the ingest login crosses the network in clear",
                "use the TLS listener: LANTAARN_MQTT__TLS=true, LANTAARN_MQTT__CA_FILE, port 8883",
            )
        ]
    try:
        context = tls_context(target)
    except (OSError, ssl.SSLError) as exc:
        return [
            Finding(
                check,
                Status.FAIL,
                f"cannot load the CA or client certificate: {exc}",
                "set LANTAARN_MQTT__CA_FILE (and CERT_FILE/KEY_FILE) to readable PEM files",
            )
        ]
    try:
        with (
            socket.create_connection((target.host, target.port), CONNECT_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=target.host) as tls,
        ):
            peer = tls.getpeercert() or {}
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return [
            Finding(
                check,
                Status.FAIL,
                f"the broker's certificate does not verify for {target.host!r} against "
                f"{target.ca_file}: {exc.verify_message}",
                "issue the broker a certificate from this CA naming this host "
                "(`lantaarn pki server --name HOST`), or point LANTAARN_MQTT__CA_FILE at "
                "the CA that signed it",
            )
        ]
    except (OSError, ssl.SSLError) as exc:
        return [
            Finding(
                check,
                Status.FAIL,
                f"no TLS handshake with {target.host}:{target.port}: {exc}",
                "is this the broker's TLS listener (8883)? check `listener`/`certfile` in "
                "mosquitto.conf and `journalctl -u mosquitto`",
            )
        ]
    expires = peer.get("notAfter")
    findings = [Finding(check, Status.OK, f"{version}, certificate verified for {target.host}")]
    if isinstance(expires, str):
        left = (
            datetime.fromtimestamp(ssl.cert_time_to_seconds(expires), UTC) - datetime.now(UTC)
        ).days
        if left < CERT_WARN_DAYS:
            findings.append(
                Finding(
                    "broker: certificate",
                    Status.WARN,
                    f"the broker's certificate expires in {left} days",
                    "issue a new server certificate and reload Mosquitto (SIGHUP)",
                )
            )
    return findings


@dataclass
class _Client:
    """A paho client run on its own thread, with the events the probe waits for."""

    target: BrokerTarget
    client_id: str
    username: str | None
    password: str | None = field(repr=False)
    connected: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    session_present: bool = False
    refused: str = ""
    granted: list[int] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    retained: dict[str, bytes] = field(default_factory=dict)
    last_message: float = 0.0
    paho: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.paho.max_inflight_messages_set(100)
        if self.username is not None:
            self.paho.username_pw_set(self.username, self.password)
        if self.target.tls:
            self.paho.tls_set_context(tls_context(self.target))
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message
        self.paho.on_disconnect = self._on_disconnect

    def _on_connect(
        self, _c: object, _u: object, flags: object, reason: object, _p: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self.refused = str(reason)
        self.session_present = bool(getattr(flags, "session_present", False))
        self.connected.set()

    def _on_subscribe(
        self, _c: object, _u: object, _mid: int, codes: list[ReasonCode], _p: object
    ) -> None:
        self.granted = [int(getattr(c, "value", 0x80)) for c in codes]
        self.subscribed.set()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith("$SYS/"):
            self.retained[message.topic] = bytes(message.payload)
        else:
            self.received.append(bytes(message.payload))
        self.last_message = time.monotonic()

    def _on_disconnect(self, *_args: object) -> None:
        self.disconnected.set()

    def connect(self, *, clean_start: bool, session_expiry_s: int) -> None:
        """Connect and wait for the CONNACK; ProbeFailed when refused or unanswered."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry_s
        self.connected.clear()
        self.disconnected.clear()
        self.refused = ""
        try:
            self.paho.connect(
                self.target.host,
                self.target.port,
                keepalive=30,
                clean_start=clean_start,
                properties=properties,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ProbeFailed(
                f"cannot connect to {self.target.host}:{self.target.port}: {exc}"
            ) from exc
        self.paho.loop_start()
        if not self.connected.wait(CONNECT_TIMEOUT_S):
            self.close()
            raise ProbeFailed(f"no CONNACK from {self.target.host}:{self.target.port}")
        if self.refused:
            self.close()
            raise ProbeFailed(f"the broker refused client id {self.client_id!r}: {self.refused}")

    def subscribe(self, topic: str) -> int:
        """Subscribe at QoS 1; the granted QoS (0x80 and above: refused)."""
        self.subscribed.clear()
        self.paho.subscribe(topic, qos=1)
        if not self.subscribed.wait(CONNECT_TIMEOUT_S):
            raise ProbeFailed(f"no SUBACK for {topic!r}")
        return self.granted[0] if self.granted else 0x80

    def close(self) -> None:
        """Disconnect (the session outlives it by the expiry given at connect) and stop."""
        if self.paho.is_connected():
            self.paho.disconnect()
            self.disconnected.wait(CONNECT_TIMEOUT_S)
        self.paho.loop_stop()


@contextmanager
def _connected(
    target: BrokerTarget, client_id: str, probe: ProbeConfig, **how: int | bool
) -> Iterator[_Client]:
    client = _Client(target, client_id, probe.username, probe.password)
    client.connect(clean_start=bool(how["clean_start"]), session_expiry_s=int(how["expiry"]))
    try:
        yield client
    finally:
        client.close()


def check_reachable(
    target: BrokerTarget, probe: ProbeConfig
) -> tuple[list[Finding], dict[str, bytes]]:
    """Connect as the probe; also read the broker's `$SYS` figures where its ACL allows."""
    check = "broker: reachable"
    try:
        with _connected(target, f"{probe.client_id}-sys", probe, clean_start=True, expiry=0) as c:
            c.subscribe("$SYS/broker/#")
            time.sleep(1.5)  # $SYS topics are retained: they arrive at once, when allowed
            figures = dict(c.retained)
    except ProbeFailed as exc:
        return [
            Finding(
                check,
                Status.FAIL,
                str(exc),
                "check LANTAARN_MQTT__HOST/PORT and the probe login (LANTAARN_DOCTOR__USERNAME/"
                "PASSWORD); is Mosquitto running? `systemctl status mosquitto`",
            )
        ], {}
    version = figures.get("$SYS/broker/version", b"").decode(errors="replace")
    seen = f" ({version})" if version else ""
    return [Finding(check, Status.OK, f"MQTT 5 at {target.host}:{target.port}{seen}")], figures


def check_queue(target: BrokerTarget, probe: ProbeConfig) -> list[Finding]:
    """Measure what the broker keeps for an offline persistent session.

    A probe session subscribes at QoS 1 to a private topic and goes offline; `probe.messages`
    QoS 1 messages are published to it; the session comes back and counts what it is handed;
    then it ends the session. An ingest worker that is down (restarting, InfluxDB stalled) is
    owed its share of every device's messages in exactly this way.
    """
    check = "broker: queue for an offline session"
    topic = f"{probe.topic_prefix}/{probe.client_id}/{uuid.uuid4().hex[:8]}"
    want = probe.messages
    fix_acl = (
        "give the doctor a login allowed client ids "
        f"{probe.client_id}, {probe.client_id}-pub and readwrite on {probe.topic_prefix}/# "
        "(LANTAARN_DOCTOR__USERNAME/PASSWORD)"
    )
    expiry = max(60, int(probe.timeout_s * 4))
    try:
        with _connected(target, probe.client_id, probe, clean_start=True, expiry=expiry) as sub:
            granted = sub.subscribe(topic)
            if granted >= 0x80:
                return [
                    Finding(check, Status.FAIL, f"subscribing was refused ({granted:#x})", fix_acl)
                ]
        with _connected(target, f"{probe.client_id}-pub", probe, clean_start=True, expiry=0) as pub:
            infos = [pub.paho.publish(topic, f"{n}".encode(), qos=1) for n in range(want)]
            deadline = time.monotonic() + probe.timeout_s
            for info in infos:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            acked = sum(1 for info in infos if info.is_published())
        if acked < want:
            return [
                Finding(
                    check,
                    Status.FAIL,
                    f"only {acked} of {want} QoS 1 messages were acknowledged to the publisher",
                    fix_acl,
                )
            ]
        # Back with the same client id: the broker hands over what it kept. Session expiry 0
        # on this connection ends the session when we leave.
        with _connected(target, probe.client_id, probe, clean_start=False, expiry=0) as sub:
            present = sub.session_present
            deadline = time.monotonic() + probe.timeout_s
            sub.last_message = time.monotonic()
            while (
                len(sub.received) < want
                and time.monotonic() < deadline
                and time.monotonic() - sub.last_message < probe.quiet_s
            ):
                time.sleep(0.05)
            got = len({bytes(m) for m in sub.received})
    except ProbeFailed as exc:
        return [Finding(check, Status.FAIL, str(exc), fix_acl)]
    if not present:
        return [
            Finding(
                check,
                Status.FAIL,
                "the broker did not keep the probe's session while it was offline: an ingest "
                "worker's messages would be lost whenever it reconnects",
                "allow persistent sessions: `persistent_client_expiration 30d` in mosquitto.conf "
                "(and no `max_session_expiry_interval` below the workers' session expiry)",
            )
        ]
    if got < want:
        limit = (
            " (Mosquitto's default max_queued_messages is 1000)"
            if got <= DEFAULT_QUEUE_LIMIT
            else ""
        )
        return [
            Finding(
                check,
                Status.FAIL,
                f"the broker kept {got} of {want} QoS 1 messages for an offline session{limit}: "
                "every message past that is acknowledged to the device and then dropped",
                "raise `max_queued_messages` (and `max_queued_bytes`, if set) in mosquitto.conf "
                "to hold an outage's backlog, as deploy/ ships it, and restart Mosquitto",
            )
        ]
    return [Finding(check, Status.OK, f"kept all {want} QoS 1 messages for an offline session")]


def check_persistence(config_text: str | None, where: str) -> list[Finding]:
    """Persistence and queue limits from mosquitto.conf, when the doctor can read it."""
    check = "broker: persistence"
    if config_text is None:
        return [
            Finding(
                check,
                Status.INFO,
                "cannot tell from outside: Mosquitto reports nothing about persistence over MQTT "
                "(and the doctor does not restart a broker to find out)",
                "run the doctor on the broker's host with --broker-config /etc/mosquitto/"
                "mosquitto.conf to have it read",
            )
        ]
    options: dict[str, str] = {}
    for line in config_text.splitlines():
        words = line.split(None, 1)
        if words and not words[0].startswith("#"):
            options[words[0]] = words[1].strip() if len(words) > 1 else ""
    findings = []
    if options.get("persistence", "false").lower() not in ("true", "1", "yes"):
        findings.append(
            Finding(
                check,
                Status.FAIL,
                f"{where} has no `persistence true`: a broker restart loses every queued and "
                "in-flight message and every session",
                "add `persistence true`, `persistence_location /var/lib/mosquitto/` and "
                "`autosave_interval 30` (deploy/ ships them) and restart Mosquitto",
            )
        )
    else:
        every = options.get("autosave_interval", "1800")
        findings.append(
            Finding(check, Status.OK, f"persistence on in {where} (saved every {every} s)")
        )
    return findings


def session_counts(figures: dict[str, bytes]) -> Finding | None:
    """What `$SYS` says about client sessions (counts only: Mosquitto names none)."""
    connected = figures.get("$SYS/broker/clients/connected")
    disconnected = figures.get("$SYS/broker/clients/disconnected")
    if connected is None:
        return None
    offline = int(disconnected or b"0")
    text = (
        f"$SYS (as of its last update, every 10 s by default): {int(connected)} clients "
        f"connected, {offline} persistent sessions offline"
    )
    if offline:
        return Finding(
            "broker: sessions",
            Status.INFO,
            text + " (an offline ingest worker's session keeps receiving its share)",
            "if a worker was scaled down for good: `lantaarn ingest --index N --leave`",
        )
    return Finding("broker: sessions", Status.OK, text)
