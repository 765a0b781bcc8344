"""Device certificates against a real Mosquitto with a TLS listener that requires them.

The listener is configured as a deployment's X.509 listener is: `require_certificate`,
`use_identity_as_username` (the certificate's common name `{tenant}/{deviceId}` becomes the
username, so the `%u` ACL patterns of password logins bind certificates too), the authority's
`crlfile`, and TLS 1.2 at least. A paho-mqtt client is the device; a second paho client with a
password login on a loopback listener watches what arrives.
"""

from __future__ import annotations

import signal
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker.pki import Authority
from devices import Registry, Tenant
from devices.provisioning import hash_password
from lantaarn.cli import main
from lantaarn.localstack import ServiceProcess, free_port
from tests.broker.test_pki import _lamppost, device_csr
from tests.conftest import require_program

A = "GM0363/gm0363-lp-00001"
B = "GM0363/gm0363-lp-00002"
WATCHER = "watcher"
WATCHER_PASSWORD = "watcher-password-for-tests"
# Bounds on waiting for the broker; never asserted on.
WAIT_S = 10.0


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """A private Mosquitto with TLS listeners for devices and a loopback one for the watcher."""

    folder: Path
    authority: Authority
    tls_port: int = field(default_factory=free_port)
    # TLS 1.1 is allowed by OpenSSL 3 only at security level 0; these two listeners lower it,
    # so that what refuses TLS 1.1 is our `tls_version` line and not OpenSSL's default. The
    # second leaves `tls_version` out: a control, on which TLS 1.1 must get through.
    weak_port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    plain_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.log = self.folder / "mosquitto.log"
        config = self.folder / "mosquitto.conf"
        config.write_text(self.config_text())
        (self.folder / "acl").write_text(
            f"user {WATCHER}\ntopic read lantaarn/v1/#\n\n"
            "pattern write lantaarn/v1/%u/telemetry\npattern write lantaarn/v1/%u/status\n"
        )
        (self.folder / "passwords").write_text(
            f"{WATCHER}:{hash_password(WATCHER_PASSWORD, iterations=1000)}\n"
        )
        self.service = ServiceProcess(
            "mosquitto",
            ["mosquitto", "-c", str(config)],
            self.log,
            lambda: all(
                _tcp_open(host, port)
                for host, port in (
                    ("::1", self.tls_port),
                    ("::1", self.weak_port),
                    ("::1", self.control_port),
                    ("127.0.0.1", self.plain_port),
                )
            ),
        )

    def config_text(self) -> str:
        """The broker's configuration."""
        pki = self.authority
        tls = [
            f"cafile {pki.ca_file}",
            f"certfile {pki.folder / 'server.crt'}",
            f"keyfile {pki.folder / 'server.key'}",
            "require_certificate true",
            "use_identity_as_username true",
            f"crlfile {pki.crl_file}",
        ]
        return "\n".join(
            [
                "log_dest stderr",  # unbuffered: the test reads the log while it runs
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                "user root",  # the folders are root's and 0700
                "per_listener_settings false",
                "allow_anonymous false",
                f"password_file {self.folder / 'passwords'}",
                f"acl_file {self.folder / 'acl'}",
                f"listener {self.tls_port} ::1",
                *tls,
                "tls_version tlsv1.2",
                f"listener {self.weak_port} ::1",
                *tls,
                "tls_version tlsv1.2",
                "ciphers DEFAULT:@SECLEVEL=0",
                f"listener {self.control_port} ::1",
                *tls,
                "ciphers DEFAULT:@SECLEVEL=0",
                f"listener {self.plain_port} 127.0.0.1",
                "",
            ]
        )

    def reload(self) -> None:
        """SIGHUP, and wait until the broker logged that it re-read its configuration."""
        assert self.service.process is not None
        before = self.log.read_text().count("Reloading config")
        self.service.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT_S
        while self.log.read_text().count("Reloading config") == before:
            assert time.monotonic() < deadline, "the broker did not reload"
            time.sleep(0.05)


@dataclass
class Identity:
    """A device's certificate and key files."""

    cert: Path
    key: Path


class Refused(Exception):
    """The broker (or TLS) did not let the client in."""


@dataclass
class Device:
    """A connected paho client; publishes are QoS 1 and waited for."""

    client: mqtt.Client
    acks: dict[int, ReasonCode] = field(default_factory=dict)
    acked: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish and wait for the PUBACK; its reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self.acked:
            assert self.acked.wait_for(lambda: info.mid in self.acks, WAIT_S), "no PUBACK"
            return self.acks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def tls_context(
    authority: Authority,
    identity: Identity | None,
    *,
    version: ssl.TLSVersion | None = None,
    ca_file: Path | None = None,
) -> ssl.SSLContext:
    """A client's TLS context: checks the broker against `ca_file`, presents `identity`."""
    context = ssl.create_default_context(cafile=str(ca_file or authority.ca_file))
    if identity is not None:
        context.load_cert_chain(identity.cert, identity.key)
    if version is not None:
        # Python deprecates TLS 1.1, which is what this client must offer.
        with warnings.catch_warnings(action="ignore", category=DeprecationWarning):
            context.minimum_version = version
            context.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer it
    return context


def connect(port: int, context: ssl.SSLContext, client_id: str) -> Device:
    """A device connected over TLS to ::1; Refused if the broker or TLS says no."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.tls_set_context(context)
    device = Device(client)
    outcome: list[str] = []
    done = threading.Event()

    def on_connect(
        c: mqtt.Client, u: object, f: object, reason: ReasonCode, p: Properties | None
    ) -> None:
        outcome.append("connected" if not reason.is_failure else f"refused: {reason}")
        done.set()

    def on_disconnect(
        c: mqtt.Client, u: object, f: object, reason: ReasonCode, p: Properties | None
    ) -> None:
        outcome.append(f"disconnected: {reason}")
        done.set()

    def on_publish(
        c: mqtt.Client, u: object, mid: int, reason: ReasonCode, p: Properties | None
    ) -> None:
        with device.acked:
            device.acks[mid] = reason
            device.acked.notify_all()

    def on_connect_fail(c: mqtt.Client, u: object) -> None:
        outcome.append("failed")
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    client.on_connect_fail = on_connect_fail
    try:
        # With TLS 1.2 a refused certificate fails the handshake here; with TLS 1.3 the client
        # finishes its side first and learns of the refusal on its first read.
        client.connect("::1", port)
    except (ssl.SSLError, OSError) as exc:
        raise Refused(f"handshake: {exc}") from None
    client.loop_start()
    if not done.wait(WAIT_S) or outcome[0] != "connected":
        client.loop_stop()
        raise Refused(outcome[0] if outcome else "no answer")
    return device


def attempt(port: int, context: ssl.SSLContext, client_id: str) -> None:
    """Connect over TLS and send an MQTT 5 CONNECT; Refused unless a CONNACK of success comes.

    A plain socket rather than paho: paho leaves the socket of a failed handshake to the
    garbage collector, and a refusal is what these checks look for.
    """
    name = client_id.encode()
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + len(name).to_bytes(2, "big") + name
    packet = bytes([0x10, len(body)]) + body
    try:
        with (
            socket.create_connection(("::1", port), timeout=WAIT_S) as raw,
            context.wrap_socket(raw, server_hostname="::1") as tls,
        ):
            tls.sendall(packet)
            answer = tls.recv(4)
    except (ssl.SSLError, OSError) as exc:
        raise Refused(f"TLS: {exc}") from None
    if len(answer) < 4 or answer[0] != 0x20:
        raise Refused(f"no CONNACK: {answer!r}")
    if answer[3] != 0:
        raise Refused(f"CONNACK reason {answer[3]:#x}")


class Watcher:
    """A subscriber with its own password login that collects what arrives, in order."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.arrived = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="watcher", protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(WATCHER, WATCHER_PASSWORD)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe("lantaarn/v1/#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S), "the watcher could not subscribe"

    def _on_message(self, c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.messages.append((message.topic, bytes(message.payload)))
            self.arrived.notify_all()

    def until(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including `payload`."""
        with self.arrived:
            found = self.arrived.wait_for(
                lambda: any(p == payload for _, p in self.messages), WAIT_S
            )
            assert found, f"{payload!r} never arrived; got {self.messages}"
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def topic(identity: str) -> str:
    return f"lantaarn/v1/{identity}/telemetry"


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Broker, dict[str, Identity]]]:
    """An authority, device A's certificate signed by `lantaarn pki sign` from A's own CSR,
    B's issued directly, and the broker."""
    require_program("mosquitto", "mosquitto")
    folder = tmp_path_factory.mktemp("pki-broker")
    registry_url = f"sqlite:///{folder / 'registry.sqlite3'}"
    with Registry(registry_url) as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam", ("2001:db8:363::/48",)))
        for device_id in ("gm0363-lp-00001", "gm0363-lp-00002"):
            registry.add_device(_lamppost(device_id))
    pki = folder / "pki"
    identities: dict[str, Identity] = {}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LANTAARN_REGISTRY_URL", registry_url)
        assert main(["pki", "--folder", str(pki), "init"]) == 0
        assert main(["pki", "--folder", str(pki), "server", "--ip", "::1", "127.0.0.1"]) == 0
        csr, key = device_csr(None)
        (folder / "a.csr").write_bytes(csr)
        (folder / "a.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        command = ["pki", "--folder", str(pki), "sign", "--device", "gm0363-lp-00001"]
        assert main([*command, "--csr", str(folder / "a.csr"), "--out", str(folder / "a.crt")]) == 0
    identities[A] = Identity(folder / "a.crt", folder / "a.key")
    authority = Authority.load(pki)
    identities[B] = write_identity(folder, "b", *authority.issue_device(B))
    broker = Broker(folder, authority)
    broker.service.start()
    try:
        yield broker, identities
    finally:
        broker.service.stop()


def write_identity(folder: Path, name: str, cert: bytes, key: bytes) -> Identity:
    (folder / f"{name}.crt").write_bytes(cert)
    (folder / f"{name}.key").write_bytes(key)
    (folder / f"{name}.key").chmod(0o600)
    return Identity(folder / f"{name}.crt", folder / f"{name}.key")


@pytest.fixture
def watcher(deployment: tuple[Broker, dict[str, Identity]]) -> Iterator[Watcher]:
    one = Watcher(deployment[0].plain_port)
    yield one
    one.close()


def test_a_device_certificate_publishes_on_its_own_topic_and_not_as_another(
    deployment: tuple[Broker, dict[str, Identity]], watcher: Watcher
) -> None:
    broker, ids = deployment
    device = connect(broker.tls_port, tls_context(broker.authority, ids[A]), "gm0363-lp-00001")
    try:
        assert not device.publish(topic(A), b"a-own-1").is_failure
        # Denied: MQTT 5 says so in the PUBACK, and nothing reaches subscribers.
        assert device.publish(topic(B), b"a-as-b").is_failure
        assert not device.publish(topic(A), b"a-own-2").is_failure
    finally:
        device.close()
    # One publisher, one subscriber: what arrives keeps its order, so had "a-as-b" been let
    # through it would have arrived before "a-own-2".
    received = watcher.until(b"a-own-2")
    assert (topic(A), b"a-own-1") in received
    assert all(payload != b"a-as-b" for _, payload in received)


def test_a_certificate_of_another_authority_is_refused(
    deployment: tuple[Broker, dict[str, Identity]], tmp_path: Path
) -> None:
    broker, ids = deployment
    stranger = Authority.create(tmp_path / "other", name="lantaarn device CA")  # same name
    intruder = write_identity(tmp_path, "a-forged", *stranger.issue_device(A))
    with pytest.raises(Refused):
        attempt(broker.tls_port, tls_context(broker.authority, intruder), "gm0363-lp-00001")
    # Without any certificate the listener refuses too.
    with pytest.raises(Refused):
        attempt(broker.tls_port, tls_context(broker.authority, None), "gm0363-lp-00001")
    # The real one gets in (so the refusals are about the certificates).
    attempt(broker.tls_port, tls_context(broker.authority, ids[A]), "gm0363-lp-00001")


def test_an_expired_certificate_is_refused(
    deployment: tuple[Broker, dict[str, Identity]], tmp_path: Path
) -> None:
    broker, _ = deployment
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = write_identity(tmp_path, "a-old", *broker.authority.issue_device(A, not_after=past))
    with pytest.raises(Refused):
        attempt(broker.tls_port, tls_context(broker.authority, expired), "gm0363-lp-00001")
    fresh = write_identity(tmp_path, "a-new", *broker.authority.issue_device(A))
    attempt(broker.tls_port, tls_context(broker.authority, fresh), "gm0363-lp-00001")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_1], ids=["tls1.1"])
def test_tls_below_1_2_is_refused(
    deployment: tuple[Broker, dict[str, Identity]], version: ssl.TLSVersion
) -> None:
    broker, ids = deployment
    old = tls_context(broker.authority, ids[A], version=version)
    for port in (broker.tls_port, broker.weak_port):
        with pytest.raises(Refused):
            attempt(port, old, "gm0363-lp-00001")
    # The control listener, without `tls_version`, lets this very client in: it does speak
    # TLS 1.1, and what refused it above is the listener's minimum.
    attempt(broker.control_port, old, "gm0363-lp-00001")
    for modern in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = tls_context(broker.authority, ids[A], version=modern)
        attempt(broker.tls_port, context, "gm0363-lp-00001")


def test_a_revoked_certificate_is_refused_once_the_broker_reloads_the_crl(
    deployment: tuple[Broker, dict[str, Identity]], tmp_path: Path, watcher: Watcher
) -> None:
    broker, ids = deployment
    authority = broker.authority
    # A certificate of its own, so that revoking it leaves the other tests' alone.
    doomed_id = "GM0363/gm0363-lp-00002"
    doomed = ids[B]
    context = tls_context(authority, doomed)
    connected = connect(broker.tls_port, context, "gm0363-lp-00002")
    assert not connected.publish(topic(doomed_id), b"b-before").is_failure

    authority.revoke(doomed_id)
    crl = x509.load_pem_x509_crl(authority.write_crl().read_bytes())
    assert x509.load_pem_x509_certificate(doomed.cert.read_bytes()).serial_number in {
        r.serial_number for r in crl
    }
    # Mosquitto 2.0.11 reads `crlfile` when a listener is set up: at start and on SIGHUP, not
    # when the file changes. Until the reload the revoked certificate still gets in.
    attempt(broker.tls_port, context, "gm0363-lp-00002-early")
    broker.reload()
    with pytest.raises(Refused):
        attempt(broker.tls_port, context, "gm0363-lp-00002")
    # Mosquitto alone does not cut a connection made before the reload (the lantaarn plugin
    # does: tests/broker/test_attack_tls.py).
    assert not connected.publish(topic(doomed_id), b"b-after").is_failure
    connected.close()
    assert (topic(doomed_id), b"b-after") in watcher.until(b"b-after")
    # Others are not affected.
    attempt(broker.tls_port, tls_context(authority, ids[A]), "gm0363-lp-00001")


def test_an_expired_crl_locks_every_certificate_out_until_it_is_rewritten(
    deployment: tuple[Broker, dict[str, Identity]],
) -> None:
    broker, ids = deployment
    context = tls_context(broker.authority, ids[A])
    attempt(broker.tls_port, context, "gm0363-lp-00001")
    try:
        # A CRL past its nextUpdate: OpenSSL fails every client's verification.
        broker.authority.write_crl(valid_for=-timedelta(hours=1))
        broker.reload()
        with pytest.raises(Refused):
            attempt(broker.tls_port, context, "gm0363-lp-00001")
    finally:
        # `lantaarn pki crl` (a timer in a deployment) and a reload mend it.
        broker.authority.write_crl()
        broker.reload()
    attempt(broker.tls_port, context, "gm0363-lp-00001")
