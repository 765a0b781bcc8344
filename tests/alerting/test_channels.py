"""The notification channels against real servers: SMTP (aiosmtpd, plain and STARTTLS) and a
real Prometheus Alertmanager; webhooks are covered with the evaluator (test_evaluator.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import ipaddress
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alerting.channels import AlertmanagerChannel, EmailChannel, Notice, SmtpConfig
from devices.alert_rules import Alert, AlertState
from tests.conftest import require_program

pytestmark = pytest.mark.anyio

T0 = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)


def _alert(subject: str, tenant: str = "GM0363", state: AlertState = AlertState.FIRING) -> Alert:
    return Alert(
        id=f"00000000-0000-0000-0000-{abs(hash(subject)) % 10**12:012d}",
        rule_id="11111111-1111-1111-1111-111111111111",
        rule_name="Night noise",
        tenant=tenant,
        subject=subject,
        device_id=subject,
        state=state,
        value=58.0,
        summary="laeq energetic_mean over 15m is 58 dB",
        started_at=T0,
        fired_at=T0,
        acknowledged_at=None,
        resolved_at=T0 + dt.timedelta(hours=1) if state is AlertState.RESOLVED else None,
        note=None,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Message, bool]] = []  # (message, came over TLS)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((email.message_from_bytes(envelope.content), session.ssl is not None))
        return "250 OK"


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("::1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[_Inbox, int, Path]]:
    """A real SMTP server on ::1 offering STARTTLS with a self-signed certificate."""
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="::1", port=port, tls_context=context)
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()


@pytest.fixture
def plain_smtp_server() -> Iterator[tuple[_Inbox, int]]:
    """A real SMTP server on ::1 that does not offer STARTTLS."""
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="::1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_one_message_per_tenant_over_starttls_in_dutch(
    smtp_server: tuple[_Inbox, int, Path],
) -> None:
    inbox, port, cert = smtp_server
    config = SmtpConfig(
        "::1",
        port,
        "alerts@lantaarn.invalid",
        ("wacht@gemeente.invalid",),
        language="nl",
        require_tls=True,
        ca_file=cert,
    )
    notices = [
        Notice(1, _alert("dam-1"), "firing", 0),
        Notice(2, _alert("dam-2"), "firing", 0),
        Notice(3, _alert("dam-3", state=AlertState.RESOLVED), "resolved", 0),
        Notice(4, _alert("ut-1", tenant="GM0344"), "firing", 0),
    ]
    outcome = await EmailChannel(config).send(notices)
    assert outcome == [None, None, None, None]
    assert len(inbox.messages) == 2  # one per tenant: its alerts as one group
    by_subject = {m["Subject"]: (m, tls) for m, tls in inbox.messages}
    amsterdam, tls = by_subject["[lantaarn] GM0363: 2 actief, 1 opgelost"]
    assert tls
    payload = amsterdam.get_payload(decode=True)
    assert isinstance(payload, bytes)  # a single-part message's body, decoded from its transfer
    body = payload.decode()
    assert body.startswith("Meldingen van GM0363:")
    assert "[opgelost] Night noise — dam-3" in body
    assert "[lantaarn] GM0344: 1 actief, 0 opgelost" in by_subject


async def test_english_without_starttls_and_a_refusal_when_tls_is_required(
    plain_smtp_server: tuple[_Inbox, int],
) -> None:
    inbox, port = plain_smtp_server
    config = SmtpConfig("::1", port, "a@lantaarn.invalid", ("b@gemeente.invalid",))
    assert await EmailChannel(config).send([Notice(1, _alert("dam-1"), "firing", 0)]) == [None]
    ((message, tls),) = inbox.messages
    assert (message["Subject"], tls) == ("[lantaarn] GM0363: 1 firing, 0 resolved", False)
    strict = SmtpConfig("::1", port, "a@x.invalid", ("b@x.invalid",), require_tls=True)
    (error,) = await EmailChannel(strict).send([Notice(2, _alert("dam-2"), "firing", 0)])
    assert error is not None
    assert "STARTTLS" in error
    assert len(inbox.messages) == 1


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus Alertmanager on ::1 (Debian's prometheus-alertmanager)."""
    require_program("prometheus-alertmanager", "prometheus-alertmanager")
    port, cluster = _free_port(), _free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: nobody\n  group_wait: 1h\nreceivers:\n  - name: nobody\n"
    )
    log_file = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus-alertmanager",
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=[::1]:{port}",
            f"--cluster.listen-address=127.0.0.1:{cluster}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    log_file.close()  # the child has its own copy
    url = f"http://[::1]:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                log = (tmp_path / "alertmanager.log").read_text()
                pytest.fail(f"alertmanager did not start: {log[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def test_alerts_are_pushed_to_alertmanager_and_resolved_there(alertmanager: str) -> None:
    channel = AlertmanagerChannel(alertmanager, generator_url="https://lantaarn.invalid")
    firing = _alert("dam-1")
    assert await channel.send([Notice(1, firing, "firing", 0)]) == [None]
    async with httpx.AsyncClient() as http:
        (shown,) = (await http.get(f"{alertmanager}/api/v2/alerts")).json()
        assert shown["labels"]["alertname"] == "Night noise"
        assert shown["labels"]["device_id"] == "dam-1"
        assert shown["labels"]["tenant"] == "GM0363"
        assert shown["annotations"]["summary"] == firing.summary
        assert shown["status"]["state"] == "active"
        assert shown["generatorURL"] == f"https://lantaarn.invalid/v1/alerts/{firing.id}"
        resolved = _alert("dam-1", state=AlertState.RESOLVED)
        resolved = replace(resolved, resolved_at=dt.datetime.now(dt.UTC))
        assert await channel.send([Notice(2, resolved, "resolved", 0)]) == [None]
        await asyncio.sleep(0.2)
        active = (await http.get(f"{alertmanager}/api/v2/alerts", params={"active": "true"})).json()
        assert active == []


async def test_an_unreachable_alertmanager_is_a_failed_delivery() -> None:
    channel = AlertmanagerChannel(f"http://[::1]:{_free_port()}")
    (error,) = await channel.send([Notice(1, _alert("dam-1"), "firing", 0)])
    assert error is not None
    assert error.startswith("ConnectError")


async def test_open_alerts_are_pushed_again_so_alertmanager_keeps_them(
    alertmanager: str, tmp_path: Path
) -> None:
    from alerting import Evaluator, EvaluatorConfig
    from devices import Registry, Tenant
    from devices.alert_rules import AlertRule, Change, RuleType
    from timeseries import InfluxClient, InfluxConfig

    with Registry(f"sqlite:///{tmp_path / 'r.sqlite3'}") as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        rule = registry.add_rule(AlertRule("GM0363", "silent", RuleType.SILENCE))
        registry.apply(
            [
                Change(rule, "tenant:GM0363", None, AlertState.FIRING, 12.0, "12 silent"),
                Change(rule, "d-2", "d-2", AlertState.PENDING, 1.0, "pending"),
            ],
            [],
        )
        async with InfluxClient(InfluxConfig(f"http://[::1]:{_free_port()}")) as unused:
            channel = AlertmanagerChannel(alertmanager)
            evaluator = Evaluator(registry, unused, [channel], EvaluatorConfig("t"))
            await evaluator.refresh()
    async with httpx.AsyncClient() as http:
        shown = (await http.get(f"{alertmanager}/api/v2/alerts")).json()
    assert [a["labels"]["subject"] for a in shown] == ["tenant:GM0363"]  # not the pending one
    assert "device_id" not in shown[0]["labels"]


async def test_a_tenants_routing_labels_ride_on_its_alerts_in_alertmanager(
    alertmanager: str, tmp_path: Path
) -> None:
    from alerting import Evaluator, EvaluatorConfig
    from devices import Registry, Tenant
    from devices.alert_channels import AlertChannel, ChannelType
    from devices.alert_rules import AlertRule, Change, RuleType
    from timeseries import InfluxClient, InfluxConfig

    with Registry(f"sqlite:///{tmp_path / 'r.sqlite3'}") as registry:
        changes = []
        for tenant in ("GM0363", "GM0344"):
            registry.add_tenant(Tenant(tenant, tenant))
            rule = registry.add_rule(AlertRule(tenant, "silent", RuleType.SILENCE))
            changes.append(Change(rule, f"tenant:{tenant}", None, AlertState.FIRING, 3.0, "quiet"))
        registry.add_channel(
            AlertChannel(
                "GM0363",
                "on-call",
                ChannelType.ALERTMANAGER,
                labels=(("severity", "critical"), ("team", "verlichting")),
            )
        )
        channel = AlertmanagerChannel(alertmanager)
        async with InfluxClient(InfluxConfig(f"http://[::1]:{_free_port()}")) as unused:
            evaluator = Evaluator(registry, unused, [channel], EvaluatorConfig("t"))
            await evaluator.evaluate()  # no rule reads anything: silence of no devices
            registry.apply(changes, ["alertmanager"])
            assert await evaluator.deliver() == (2, 0)
    async with httpx.AsyncClient() as http:
        shown = {
            a["labels"]["tenant"]: a["labels"]
            for a in (await http.get(f"{alertmanager}/api/v2/alerts")).json()
        }
    assert shown["GM0363"]["team"] == "verlichting"
    assert shown["GM0363"]["severity"] == "critical"
    assert "team" not in shown["GM0344"]  # Utrecht's alerts carry none of Amsterdam's labels
    assert shown["GM0344"]["severity"] == "warning"
