"""An attacker holding one ordinary device login, against the broker configuration we ship.

Every attack runs on every listener a device can reach (plain loopback, TLS with a password, TLS
with a client certificate), with paho-mqtt as the attacker: a client that is not ours.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from devices.topics import shared_subscription, topic
from tests.broker.peers import Listener, Peer, connect
from tests.conftest import SecuredBroker

INGEST_GROUP = "lantaarn-ingest"
READINGS = 40


def _ingest(secured: SecuredBroker, client_id: str = "ingest-0") -> Peer:
    """A stand-in ingest worker: the ingest login, a persistent session, the shared group."""
    worker = connect(
        secured.service_listener,
        secured.ingest_login,
        secured.ingest_password,
        client_id=client_id,
        clean_start=False,
        session_expiry_s=600,
    )
    assert not worker.refused, worker.connack
    codes = worker.subscribe(shared_subscription(INGEST_GROUP, "telemetry"))
    assert not codes[0].is_failure
    return worker


def _publish_readings(device: Peer, tenant: str, device_id: str, tag: str) -> list[bytes]:
    sent = [f"{tag}-{n}".encode() for n in range(READINGS)]
    for payload in sent:
        device.publish(topic(tenant, device_id), payload)
    return sent


def _all_arrive(worker: Peer, sent: list[bytes]) -> list[bytes]:
    """The readings that never reached the worker (waiting for the last one first)."""
    worker.wait_for(sent[-1])
    # QoS 1 from one publisher keeps its order through one subscriber: once the last is here,
    # anything missing was given to someone else.
    return [p for p in sent if p not in worker.payloads()]


def test_a_device_cannot_join_the_ingest_group(secured: SecuredBroker, listener: Listener) -> None:
    worker = _ingest(secured)
    victim = secured.device(secured.service_listener, "c-1")
    attacker = secured.device(listener, "a-1", clean_start=False, session_expiry_s=600)
    codes = attacker.subscribe(shared_subscription(INGEST_GROUP, "telemetry"))
    missing = _all_arrive(worker, _publish_readings(victim, "GM0344", "c-1", "while-online"))
    assert missing == [], f"ingest lost {len(missing)} of {READINGS} readings"
    assert codes[0].is_failure, "the broker let a device into the ingest group"
    # Its persistent session must not keep a membership after it is gone either.
    attacker.close()
    missing = _all_arrive(worker, _publish_readings(victim, "GM0344", "c-1", "after"))
    assert missing == [], f"after it left, ingest still lost {len(missing)} of {READINGS}"
    assert attacker.payloads() == []
    worker.close()
    victim.close()


@pytest.mark.parametrize(
    "wildcard", ["#", "$SYS/#", "lantaarn/v1/+/+/telemetry", "lantaarn/v1/GM0363/+/cmd",
                 "$share/other/lantaarn/v1/#", "lantaarn/v1/GM0363/b-1/cmd"]
)  # fmt: skip
def test_a_device_gets_no_foreign_or_wildcard_subscription(
    secured: SecuredBroker, listener: Listener, wildcard: str
) -> None:
    attacker = secured.device(listener, "a-1")
    codes = attacker.subscribe(wildcard)
    own = attacker.subscribe(topic("GM0363", "a-1", "cmd"))
    assert not own[0].is_failure
    other = secured.device(secured.service_listener, "b-1")
    other.publish(topic("GM0363", "b-1", "telemetry"), b"b reading")
    operator = secured.operator()
    operator.publish(topic("GM0363", "b-1", "cmd"), b"for b")
    operator.publish(topic("GM0363", "a-1", "cmd"), b"for a")
    assert attacker.wait_for(b"for a")
    assert attacker.payloads() == [b"for a"], attacker.received
    assert codes[0].is_failure, f"{wildcard} was granted to a device"
    for peer in (attacker, other, operator):
        peer.close()


def test_a_device_cannot_take_the_ingest_workers_client_id(
    secured: SecuredBroker, listener: Listener
) -> None:
    worker = _ingest(secured)
    attacker = secured.device(
        listener, "a-1", client_id="ingest-0", clean_start=True, must_connect=False
    )
    assert not worker.disconnected.wait(1.0), "the attacker knocked the ingest worker off"
    # On the certificate listener the broker replaces the client id by the certificate's identity.
    assert attacker.refused or listener.name == "x509"
    attacker.close()
    victim = secured.device(secured.service_listener, "c-1")
    missing = _all_arrive(worker, _publish_readings(victim, "GM0344", "c-1", "after-kick"))
    assert missing == []
    worker.close()
    victim.close()


def test_a_device_cannot_take_another_devices_client_id(
    secured: SecuredBroker, listener: Listener
) -> None:
    victim = secured.device(secured.service_listener, "a-1")  # client id = its login
    attacker = secured.device(
        listener, "c-1", client_id=secured.username("a-1"), must_connect=False
    )
    assert not victim.disconnected.wait(1.0), "another tenant's device cut a-1 off"
    assert attacker.refused or listener.name == "x509"
    attacker.close()
    victim.close()


@pytest.mark.parametrize("listener", ["plain", "tls"], indirect=True)
def test_a_device_may_use_no_client_id_but_its_login(
    secured: SecuredBroker, listener: Listener
) -> None:
    # (On the certificate listener the certificate's identity replaces any client id.)
    for client_id in ("ingest-7", "GM0363/b-1", "a-1", f"x-{uuid.uuid4().hex[:6]}"):
        attempt = secured.device(listener, "a-1", client_id=client_id, must_connect=False)
        assert attempt.refused, f"a-1 connected as {client_id!r}"
    secured.device(listener, "a-1").close()


def test_a_service_login_cannot_take_an_ingest_client_id(secured: SecuredBroker) -> None:
    worker = _ingest(secured)
    operator = connect(
        secured.service_listener,
        secured.operator_login,
        secured.operator_password,
        client_id="ingest-0",
    )
    assert operator.refused
    assert not worker.disconnected.wait(0.5)
    worker.close()


def test_a_message_larger_than_the_payload_contract_is_refused(
    secured: SecuredBroker, listener: Listener
) -> None:
    worker = _ingest(secured)
    device = secured.device(listener, "a-1")
    fits = b"x" * 65_536  # the contract: at most 64 KiB
    device.publish(topic("GM0363", "a-1"), fits)
    assert worker.wait_for(fits)
    huge = b"y" * (4 * 1024 * 1024)
    device.publish(topic("GM0363", "a-1"), huge)
    assert not worker.wait_for(huge, 2.0), "a 4 MiB message went through"
    device.close()
    worker.close()


def test_anonymous_and_other_username_formats_are_refused(
    secured: SecuredBroker, listener: Listener
) -> None:
    password = secured.logins["a-1"].password
    assert connect(listener, None, None).refused
    for username in ("a-1", "GM0363/a-1/", "/GM0363/a-1", "gm0363/a-1", "GM0363/+", "GM0363/#",
                     "GM0363//a-1", " GM0363/a-1", "GM0363/a-1\x00"):  # fmt: skip
        assert connect(listener, username, password, client_id=username).refused, username
    assert connect(listener, secured.username("a-1"), "wrong").refused
    assert connect(listener, secured.username("a-1"), secured.logins["b-1"].password).refused


def test_a_device_cannot_publish_or_will_on_anothers_topics(
    secured: SecuredBroker, listener: Listener
) -> None:
    watcher = connect(secured.service_listener, secured.ingest_login, secured.ingest_password)
    assert not watcher.refused
    watcher.subscribe("lantaarn/v1/+/+/telemetry", "lantaarn/v1/+/+/status")
    attacker = secured.device(
        listener, "a-1", will=(topic("GM0344", "c-1", "status"), b"spoofed offline")
    )
    attacker.publish(topic("GM0363", "b-1", "telemetry"), b"forged for b")
    attacker.publish(topic("GM0344", "c-1", "telemetry"), b"forged for c")
    attacker.publish(topic("GM0344", "a-1", "telemetry"), b"wrong tenant")
    attacker.publish(topic("GM0363", "b-1", "status"), b"forged status", retain=True)
    attacker.publish(topic("GM0363", "a-1", "telemetry"), b"own reading")
    attacker.drop()  # its will, if the broker took it, goes out now
    honest = secured.device(secured.service_listener, "c-1")
    honest.publish(topic("GM0344", "c-1", "telemetry"), b"last")
    assert watcher.wait_for(b"last")
    payloads = watcher.payloads()
    for forged in (b"forged for b", b"forged for c", b"wrong tenant", b"forged status",
                   b"spoofed offline"):  # fmt: skip
        assert forged not in payloads
    assert b"own reading" in payloads or attacker.refused
    watcher.close()
    honest.close()


def test_nothing_is_delivered_to_a_lone_subscriber_without_rights(
    secured: SecuredBroker, listener: Listener
) -> None:
    spy = secured.device(listener, "a-1")
    spy.subscribe("#")
    spy.subscribe("$SYS/#")
    spy.subscribe("$SYS/broker/uptime")
    sender = secured.device(secured.service_listener, "c-1")
    sender.publish(topic("GM0344", "c-1", "telemetry"), b"c secret")
    done = threading.Event()
    done.wait(1.5)  # $SYS is published every few seconds; 1.5 s of nothing is the claim here
    assert spy.payloads() == []
    spy.close()
    sender.close()


def test_no_other_service_login_joins_the_ingest_group(secured: SecuredBroker) -> None:
    worker = _ingest(secured)
    operator = secured.operator()
    codes = operator.subscribe(shared_subscription(INGEST_GROUP, "status"))
    victim = secured.device(secured.service_listener, "c-1")
    sent = [f"status-{n}".encode() for n in range(READINGS)]
    worker.subscribe(shared_subscription(INGEST_GROUP, "status"))
    for payload in sent:
        victim.publish(topic("GM0344", "c-1", "status"), payload)
    assert _all_arrive(worker, sent) == []
    assert codes[0].is_failure
    worker.close()
