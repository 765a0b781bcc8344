"""Each tenant's alerts reach its own channels (and the platform's), never another tenant's:
real webhook receivers and a real SMTP server, alerts from the real command history; and a
tenant's webhook that resolves to an internal address is refused at sending unless allowed."""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import orjson
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from alerting import Evaluator, EvaluatorConfig
from alerting.channels import Notice, SmtpConfig, TenantChannels, WebhookChannel
from devices import Device, Registry, Tenant
from devices.alert_channels import AlertChannel, ChannelType
from devices.alert_rules import Alert, AlertState, builtin_for
from devices.command_history import Answer, CommandStore, Issuer, NewCommand
from lantaarn.localstack import free_port
from tests.alerting.receivers import Receiver, webhook_receiver
from tests.alerting.test_channels import _certificate
from timeseries import InfluxClient, InfluxConfig

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
PLATFORM_SECRET = b"platform-key"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(url) as opened:
        opened.add_tenant(Tenant("GM0363", "Amsterdam"))
        opened.add_tenant(Tenant("GM0344", "Utrecht"))
        opened.add_devices(
            [
                Device("ams-lp", "GM0363", "lamppost", "A", 52.37, 4.9),
                Device("utr-lp", "GM0344", "lamppost", "U", 52.09, 5.12),
            ]
        )
        for tenant in ("GM0363", "GM0344"):
            rule = builtin_for("lamp-refusing", tenant)
            assert rule is not None
            opened.add_rule(rule)
        with CommandStore(url) as store:
            for tenant, device_id in (("GM0363", "ams-lp"), ("GM0344", "utr-lp")):
                for n in range(3):
                    _answer(store, tenant, device_id, "refused", NOW - timedelta(minutes=30 - n))
        yield opened


def _answer(store: CommandStore, tenant: str, device_id: str, status: str, at: datetime) -> None:
    (made,), _ = store.create(
        [NewCommand(tenant, device_id, "set_dim_level", {"level": 40}, at + timedelta(seconds=30))],
        Issuer(None, "operator"),
        now=at,
    )
    store.record_answers([Answer(tenant, device_id, made.id, status, "in manual override")], at)


@pytest.fixture
async def unused() -> AsyncIterator[InfluxClient]:
    # Command rules read the registry only; nothing listens here, and nothing is asked.
    async with InfluxClient(InfluxConfig(f"http://[::1]:{free_port()}")) as client:
        yield client


def _signed_by(receiver: Receiver, secret: bytes) -> list[dict[str, object]]:
    """The bodies that arrived, each checked against its signature with `secret`."""
    bodies = []
    for headers, body in receiver.received:
        stamp = headers["x-lantaarn-timestamp"]
        expected = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["x-lantaarn-signature"] == f"v1={expected}"
        bodies.append(orjson.loads(body))
    return bodies


async def test_each_tenant_hears_only_its_own_alerts(
    registry: Registry, unused: InfluxClient
) -> None:
    with webhook_receiver() as ams, webhook_receiver() as utr, webhook_receiver() as platform:
        a = registry.add_channel(
            AlertChannel("GM0363", "A", ChannelType.WEBHOOK, url=ams.url), allow_internal=True
        )
        b = registry.add_channel(
            AlertChannel("GM0344", "B", ChannelType.WEBHOOK, url=utr.url), allow_internal=True
        )
        assert a.secret is not None
        assert b.secret is not None
        assert a.secret != b.secret
        evaluator = Evaluator(
            registry,
            unused,
            [WebhookChannel(platform.url, PLATFORM_SECRET)],
            EvaluatorConfig("t"),
            TenantChannels(allow_internal=True),
        )
        await evaluator.evaluate(NOW)
        assert await evaluator.deliver(NOW) == (4, 0)
        got_a = _signed_by(ams, a.secret.encode())
        got_b = _signed_by(utr, b.secret.encode())
        assert [(m["event"], m["alert"]["deviceId"]) for m in got_a] == [("firing", "ams-lp")]  # type: ignore[index]
        assert [(m["event"], m["alert"]["deviceId"]) for m in got_b] == [("firing", "utr-lp")]  # type: ignore[index]
        both = _signed_by(platform, PLATFORM_SECRET)
        assert sorted(m["alert"]["tenant"] for m in both) == ["GM0344", "GM0363"]  # type: ignore[index]
        # A's key does not sign B's notifications (each channel its own key).
        with pytest.raises(AssertionError):
            _signed_by(utr, a.secret.encode())
        (alert,) = registry.alerts(tenants=["GM0363"])
        assert {d.channel for d in registry.alert(alert.id).deliveries} == {
            "webhook",
            f"webhook:{a.id}",
        }

        # Utrecht switches its channel off and both lamps obey again: Amsterdam's resolution
        # goes to its channel and the platform's; Utrecht's to the platform's only (nothing is
        # queued for a channel that is off).
        registry.update_channel(b.id, {"enabled": False})
        with CommandStore(registry.url) as store:
            _answer(store, "GM0363", "ams-lp", "done", NOW + timedelta(minutes=1))
            _answer(store, "GM0344", "utr-lp", "done", NOW + timedelta(minutes=1))
        await evaluator.evaluate(NOW + timedelta(minutes=2))
        assert await evaluator.deliver(NOW + timedelta(minutes=2)) == (3, 0)
        assert [m["event"] for m in _signed_by(ams, a.secret.encode())] == ["firing", "resolved"]
        assert len(utr.received) == 1
        (utrecht,) = registry.alerts(tenants=["GM0344"])
        assert [(d.channel, d.event) for d in registry.alert(utrecht.id).deliveries] == [
            ("webhook", "firing"),
            (f"webhook:{b.id}", "firing"),
            ("webhook", "resolved"),
        ]


async def test_a_tenant_webhook_resolving_to_loopback_is_refused_unless_allowed(
    registry: Registry, unused: InfluxClient
) -> None:
    with webhook_receiver("127.0.0.1") as inside:
        # The name, not the address: the API refuses internal literals and local names, so
        # the check that counts at sending time is where the name resolves to.
        url = inside.url.replace("127.0.0.1", "localhost")
        channel = registry.add_channel(
            AlertChannel("GM0363", "A", ChannelType.WEBHOOK, url=url), allow_internal=True
        )
        refusing = Evaluator(registry, unused, [], EvaluatorConfig("t"), TenantChannels())
        await refusing.evaluate(NOW)
        assert await refusing.deliver(NOW) == (0, 1)
        assert inside.received == []
        (alert,) = registry.alerts(tenants=["GM0363"])
        (delivery,) = registry.alert(alert.id).deliveries
        assert delivery.channel == channel.key
        assert delivery.state == "pending"  # retried later, with the reason shown
        assert delivery.last_error is not None
        assert "127.0.0.1, not a public address" in delivery.last_error
        # Where the platform's operator allows internal addresses, the same channel delivers,
        # to the address checked, with the name in Host.
        allowing = Evaluator(
            registry, unused, [], EvaluatorConfig("t"), TenantChannels(allow_internal=True)
        )
        assert await allowing.deliver(NOW + timedelta(hours=1)) == (1, 0)
        ((headers, _),) = inside.received
        assert headers["host"] == url.split("/")[2]


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        assert isinstance(envelope.content, bytes)
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[_Inbox, int]]:
    found = _Inbox()
    port = free_port()
    controller = Controller(found, hostname="::1", port=port)
    controller.start()
    try:
        yield found, port
    finally:
        controller.stop()


async def test_a_tenants_email_goes_to_its_recipients_in_its_language(
    registry: Registry, unused: InfluxClient, inbox: tuple[_Inbox, int]
) -> None:
    found, port = inbox
    registry.add_channel(
        AlertChannel(
            "GM0363",
            "Wacht",
            ChannelType.EMAIL,
            recipients=("wacht@amsterdam.example",),
            language="en",
        )
    )
    utrecht = registry.add_channel(
        AlertChannel("GM0344", "U", ChannelType.EMAIL, recipients=("storing@utrecht.example",))
    )
    smtp = SmtpConfig("::1", port, "lantaarn@platform.example", ())
    evaluator = Evaluator(registry, unused, [], EvaluatorConfig("t"), TenantChannels(smtp=smtp))
    await evaluator.evaluate(NOW)
    assert await evaluator.deliver(NOW) == (2, 0)
    by_recipient = {tuple(to): message_from_bytes(body) for to, body in found.messages}
    assert set(by_recipient) == {("wacht@amsterdam.example",), ("storing@utrecht.example",)}
    amsterdam = by_recipient[("wacht@amsterdam.example",)]
    assert amsterdam["Subject"] == "[lantaarn] GM0363: 1 firing, 0 resolved"
    assert "ams-lp" in amsterdam.get_payload()
    assert "utr-lp" not in amsterdam.get_payload()
    assert by_recipient[("storing@utrecht.example",)]["Subject"].startswith(
        "[lantaarn] GM0344: 1 actief"
    )
    # Without an SMTP server on the platform a tenant's e-mail fails, and says why.
    registry.delete_channel(utrecht.id)
    bare = Evaluator(registry, unused, [], EvaluatorConfig("t"), TenantChannels())
    with CommandStore(registry.url) as store:
        _answer(store, "GM0363", "ams-lp", "done", NOW + timedelta(minutes=1))
    await bare.evaluate(NOW + timedelta(minutes=2))
    assert await bare.deliver(NOW + timedelta(minutes=2)) == (0, 1)
    (alert,) = registry.alerts(tenants=["GM0363"])
    resolved = [d for d in registry.alert(alert.id).deliveries if d.event == "resolved"]
    assert [d.last_error for d in resolved] == ["this platform has no SMTP server configured"]


def _notice() -> Notice:
    alert = Alert(
        "00000000-0000-0000-0000-000000000001",
        "00000000-0000-0000-0000-000000000002",
        "refusing",
        "GM0363",
        "ams-lp",
        "ams-lp",
        AlertState.FIRING,
        3.0,
        "3 refused",
        NOW,
        NOW,
        None,
        None,
        None,
    )
    return Notice(1, alert, "firing", 0)


async def test_https_is_pinned_to_the_address_checked_and_verified_by_name(
    tmp_path: Path,
) -> None:
    cert, key = _certificate(tmp_path)  # for the name localhost (and ::1), not 127.0.0.1
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    with webhook_receiver("127.0.0.1", tls=server) as inside:
        url = inside.url.replace("127.0.0.1", "localhost")
        pinned = WebhookChannel(url, b"k", guarded=True, allow_internal=True, tls=trusting)
        # Connected to 127.0.0.1, the certificate checked for localhost: it verifies.
        assert await pinned.send([_notice()]) == [None]
        ((headers, _),) = inside.received
        assert headers["host"] == url.split("/")[2]
        # The check is on: a client trusting another CA refuses the same server.
        (tmp_path / "other").mkdir()
        other, _ = _certificate(tmp_path / "other")
        strict = WebhookChannel(
            url,
            b"k",
            guarded=True,
            allow_internal=True,
            tls=ssl.create_default_context(cafile=str(other)),
        )
        (error,) = await strict.send([_notice()])
        assert error is not None
        assert "CERTIFICATE_VERIFY_FAILED" in error
        assert len(inside.received) == 1
