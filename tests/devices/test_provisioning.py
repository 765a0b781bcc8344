"""Broker logins on a real Mosquitto 2.0 with the password file and ACL we write."""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker.acl import Role, ServiceLogin
from broker.passwords import write_broker_config
from devices import Device, Registry, Tenant
from devices.errors import InvalidDevice
from devices.provisioning import (
    ITERATIONS,
    Credentials,
    hash_password,
    issue_credentials,
    verify_password,
)
from devices.topics import shared_subscription, topic
from lantaarn.cli import main
from lantaarn.localstack import Mosquitto, private_mosquitto
from tests.conftest import _SERVICES, require_program

INGEST_PASSWORD = "ingest-secret"
OPERATOR_PASSWORD = "operator-secret"


def test_our_hash_is_mosquittos_format_both_ways(tmp_path: Path) -> None:
    ours = hash_password("s3cret", salt=b"twelve bytes")
    assert ours.startswith(f"$7${ITERATIONS}$dHdlbHZlIGJ5dGVz$")
    assert ITERATIONS >= 5_000  # mosquitto_passwd's 101 is too cheap to guess against
    assert verify_password("s3cret", ours)
    assert not verify_password("s3cret!", ours)
    assert not verify_password("s3cret", "plain text")
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is missing (Debian package mosquitto)")
    path = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(path), "GM0363/dev-1", "s3cret"], check=True
    )
    username, theirs = path.read_text().strip().split(":", 1)
    assert username == "GM0363/dev-1"
    assert verify_password("s3cret", theirs)
    assert not verify_password("other", theirs)


@dataclass
class Session:
    """A connected MQTT client and what it received."""

    client: mqtt.Client
    connected: ReasonCode
    received: list[tuple[str, bytes]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, payload: bytes, timeout_s: float = 5.0) -> None:
        """Block until a message with `payload` arrived."""
        with self.arrived:
            ok = self.arrived.wait_for(
                lambda: any(p == payload for _, p in self.received), timeout_s
            )
        assert ok, f"{payload!r} never arrived; got {self.received}"

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def connect(port: int, username: str | None, password: str | None) -> Session:
    """Connect with MQTT 5 and wait for the CONNACK (successful or not)."""
    # A device's client id is its own login (the broker refuses any other).
    own = username if username is not None and "/" in username else None
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=own or f"t-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    if username is not None:
        client.username_pw_set(username, password)
    done = threading.Event()
    result: list[ReasonCode] = []

    def on_connect(
        c: mqtt.Client, u: object, f: object, rc: ReasonCode, p: Properties | None
    ) -> None:
        result.append(rc)
        done.set()

    client.on_connect = on_connect
    session = Session(client, ReasonCode(mqtt.PacketTypes.CONNACK, "Success"))

    def on_message(c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
        with session.arrived:
            session.received.append((message.topic, message.payload))
            session.arrived.notify_all()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(5), "no CONNACK"
    session.connected = result[0]
    if result[0].is_failure:
        client.loop_stop()
    return session


def subscribe(session: Session, *filters: str) -> None:
    """Subscribe at QoS 1 and wait for the SUBACK."""
    done = threading.Event()
    session.client.on_subscribe = lambda *_: done.set()
    session.client.subscribe([(f, 1) for f in filters])
    assert done.wait(5), "no SUBACK"


def publish(session: Session, to: str, payload: bytes) -> None:
    """Publish at QoS 1 and wait for the broker's PUBACK."""
    session.client.publish(to, payload, qos=1).wait_for_publish(5)


@dataclass
class AuthBroker:
    """A private Mosquitto with authentication on, fed from a registry."""

    broker: Mosquitto
    registry: Registry
    logins: dict[str, Credentials]
    services: list[ServiceLogin]

    def write_config(self) -> None:
        """Write the password file and ACL from the registry and reload the broker."""
        assert self.broker.password_file is not None
        assert self.broker.acl_file is not None
        write_broker_config(
            self.registry, self.broker.password_file, self.broker.acl_file, self.services
        )


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[AuthBroker]:
    """Mosquitto with logins for devices a-1, b-1 (GM0363) and c-1 (GM0344), ingest, operator."""
    require_program("mosquitto", "mosquitto")
    with Registry(f"sqlite:///{tmp_path / 'registry.sqlite3'}") as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam", ("2001:db8:363::/48",)))
        registry.add_tenant(Tenant("GM0344", "Utrecht", ("2001:db8:344::/48",)))
        logins = {}
        for device_id, tenant in (("a-1", "GM0363"), ("b-1", "GM0363"), ("c-1", "GM0344")):
            device = Device(device_id, tenant, "noise", device_id, 52.0, 5.0)
            logins[device_id] = issue_credentials(device)
            registry.add_device(device, password_hash=logins[device_id].password_hash)
        services = [
            ServiceLogin.with_password("lantaarn-ingest", INGEST_PASSWORD, Role.INGEST),
            ServiceLogin.with_password("lantaarn-api", OPERATOR_PASSWORD, Role.OPERATOR),
        ]
        folder = tmp_path / "mosquitto"
        password_file, acl_file = folder / "passwd", folder / "acl"
        write_broker_config(registry, password_file, acl_file, services)  # before it starts
        broker = private_mosquitto(folder, password_file=password_file, acl_file=acl_file)
        setup = AuthBroker(broker, registry, logins, services)
        _SERVICES.append(broker.service)
        try:
            yield setup
        finally:
            broker.stop()
            _SERVICES.remove(broker.service)


def login(setup: AuthBroker, device_id: str) -> Session:
    """Connect as a device, which must succeed."""
    credentials = setup.logins[device_id]
    session = connect(setup.broker.port, credentials.username, credentials.password)
    assert not session.connected.is_failure, session.connected
    return session


def test_anonymous_and_wrong_passwords_are_refused(auth_broker: AuthBroker) -> None:
    port = auth_broker.broker.port
    a = auth_broker.logins["a-1"]
    assert connect(port, None, None).connected.is_failure
    assert connect(port, a.username, "wrong").connected.is_failure
    assert connect(port, a.username, auth_broker.logins["b-1"].password).connected.is_failure
    assert connect(port, "a-1", a.password).connected.is_failure  # without the tenant
    assert connect(port, "lantaarn-ingest", "wrong").connected.is_failure
    login(auth_broker, "a-1").close()


def test_a_device_cannot_publish_or_read_as_another(auth_broker: AuthBroker) -> None:
    port = auth_broker.broker.port
    ingest = connect(port, "lantaarn-ingest", INGEST_PASSWORD)
    assert not ingest.connected.is_failure
    subscribe(
        ingest,
        shared_subscription("lantaarn-ingest", "telemetry"),  # the group the ingest login owns
        topic("GM0363", "b-1", "telemetry"),
        topic("GM0363", "b-1", "status"),
    )
    a, b, c = (login(auth_broker, d) for d in ("a-1", "b-1", "c-1"))
    # a-1 tries every way to reach others' topics and to read what is not its own.
    subscribe(a, topic("GM0363", "b-1", "cmd"), "lantaarn/v1/+/+/telemetry", "lantaarn/v1/#")
    subscribe(a, topic("GM0363", "a-1", "cmd"))  # the one subscription a device may make
    subscribe(b, topic("GM0363", "b-1", "cmd"))
    publish(a, topic("GM0363", "b-1", "telemetry"), b"forged by a")
    publish(a, topic("GM0363", "b-1", "status"), b"forged status")
    publish(a, topic("GM0344", "a-1", "telemetry"), b"wrong tenant")
    publish(a, topic("GM0363", "a-1", "cmd"), b"a commands itself")
    publish(c, topic("GM0344", "c-1", "telemetry"), b"c reading")
    publish(b, topic("GM0363", "b-1", "telemetry"), b"b reading")
    publish(a, topic("GM0363", "a-1", "telemetry"), b"a reading")
    operator = connect(port, "lantaarn-api", OPERATOR_PASSWORD)
    assert not operator.connected.is_failure
    publish(operator, topic("GM0363", "b-1", "cmd"), b"dim to 40")
    publish(operator, topic("GM0363", "a-1", "cmd"), b"a: report")
    # QoS 1 from one client keeps its order: once the last message is in, nothing forged is
    # still on its way.
    ingest.wait_for(b"a reading")
    b.wait_for(b"dim to 40")
    a.wait_for(b"a: report")
    payloads = [p for _, p in ingest.received]
    assert b"forged by a" not in payloads
    assert b"forged status" not in payloads
    assert b"wrong tenant" not in payloads
    assert b"a commands itself" not in [p for _, p in b.received + a.received]
    assert {b"c reading", b"b reading", b"a reading"} <= set(payloads)
    assert [p for _, p in a.received] == [b"a: report"]  # nothing of b-1 or c-1
    for session in (ingest, a, b, c, operator):
        session.close()


def test_a_retired_device_can_no_longer_log_in(
    auth_broker: AuthBroker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = auth_broker.broker.port
    a = login(auth_broker, "a-1")
    auth_broker.registry.retire("a-1")
    process = auth_broker.broker.service.process
    assert process is not None
    monkeypatch.setenv("LANTAARN_REGISTRY_URL", auth_broker.registry.url)
    monkeypatch.setenv("LANTAARN_MQTT__USERNAME", "lantaarn-ingest")
    monkeypatch.setenv("LANTAARN_MQTT__PASSWORD", INGEST_PASSWORD)
    assert auth_broker.broker.password_file is not None
    assert auth_broker.broker.acl_file is not None
    paths = ["--password-file", str(auth_broker.broker.password_file)]
    paths += ["--acl-file", str(auth_broker.broker.acl_file)]
    code = main(["broker-config", *paths, "--reload-pid", str(process.pid)])
    assert code == 0
    assert "2 device and 1 service logins" in capsys.readouterr().out
    assert "a-1" not in auth_broker.broker.password_file.read_text()
    credentials = auth_broker.logins["a-1"]
    # The broker re-reads its files asynchronously after SIGHUP: wait until a-1 is shut out.
    for _ in range(50):
        refused = connect(port, credentials.username, credentials.password)
        if refused.connected.is_failure:
            break
        refused.close()
        threading.Event().wait(0.1)
    assert refused.connected.is_failure
    login(auth_broker, "b-1").close()  # the others still come in
    ingest = connect(port, "lantaarn-ingest", INGEST_PASSWORD)
    assert not ingest.connected.is_failure
    ingest.close()
    a.close()


def test_a_fleet_login_must_be_confined_to_one_tenant() -> None:
    # Only a device's own login may publish device data in a deployment: a simulator's login is
    # limited to a (simulation) tenant, never all of them.
    with pytest.raises(InvalidDevice, match="one"):
        ServiceLogin.with_password("lantaarn-simulator", "secret", Role.FLEET)
    confined = ServiceLogin.with_password("lantaarn-simulator", "secret", Role.FLEET, "SIM01")
    assert "topic write lantaarn/v1/SIM01/+/telemetry" in confined.acl_lines()
