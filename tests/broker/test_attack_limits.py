"""Limits at the broker a device login cannot get around."""

from __future__ import annotations

from paho.mqtt.reasoncodes import ReasonCode

from devices.topics import topic
from tests.broker.peers import connect
from tests.conftest import SecuredBroker


def test_a_device_publishing_faster_than_its_rate_is_refused(secured_slow: SecuredBroker) -> None:
    watcher = connect(secured_slow.service_listener, secured_slow.ingest_login,
                      secured_slow.ingest_password)  # fmt: skip
    watcher.subscribe("lantaarn/v1/+/+/telemetry")
    flood = secured_slow.device(secured_slow.listeners["tls"], "a-1")
    acks: list[ReasonCode] = []
    flood.client.on_publish = lambda c, u, mid, rc, p: acks.append(rc)
    for n in range(40):
        flood.publish(topic("GM0363", "a-1"), f"flood-{n}".encode())
    honest = secured_slow.device(secured_slow.service_listener, "c-1")
    honest.publish(topic("GM0344", "c-1"), b"c still gets through")
    assert watcher.wait_for(b"c still gets through")
    delivered = [p for p in watcher.payloads() if p.startswith(b"flood-")]
    # A burst of 10 and 2 a second: never all 40, and the refusals are told to the device.
    assert 10 <= len(delivered) < 40
    assert sum(1 for rc in acks if rc.is_failure) == 40 - len(delivered)
    for peer in (watcher, flood, honest):
        peer.close()
