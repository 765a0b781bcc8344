"""The evaluator on a real InfluxDB and registry: thresholds with hysteresis from rollups plus raw
minutes, silence grouped per tenant, data quality, signed webhooks with retries, the lease."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from alerting import Evaluator, EvaluatorConfig
from alerting.channels import WebhookChannel
from alerting.statistics import MinuteRollups, device_statistics
from devices import Device, Registry, Tenant
from devices.alert_rules import AlertRule, AlertState, RuleType
from lantaarn.localstack import Influx
from tests.alerting.receivers import webhook_receiver
from timeseries import BatchWriter, InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.intervals import interval_aggregates
from timeseries.lineprotocol import line, series_key
from timeseries.rollups import Coverage, rebuild, write_coverage
from timeseries.schema import RAW_RP
from timeseries.selection import Selection

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
SECRET = b"s3cret-for-tests"
# A whole quarter hour, so the evaluator's window and the API's 15-minute interval coincide.
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NOW_NS = int(NOW.timestamp()) * NS


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'registry.sqlite3'}") as opened:
        opened.add_tenant(Tenant("GM0363", "Amsterdam"))
        opened.add_tenant(Tenant("GM0344", "Utrecht"))
        created = NOW - timedelta(days=1)
        opened.add_devices(
            [
                Device(
                    f"aq-{n}", "GM0363", "air_quality", f"AQ {n}", 52.37, 4.9, created_at=created
                )
                for n in range(1, 4)
            ]
            + [
                Device(f"ut-{n}", "GM0344", "noise", f"N {n}", 52.09, 5.12, created_at=created)
                for n in range(1, 13)
            ]
        )
        yield opened


@pytest.fixture
async def client(influx: Influx) -> AsyncIterator[InfluxClient]:
    async with InfluxClient(InfluxConfig(influx.url, database=f"al_{uuid.uuid4().hex[:10]}")) as c:
        await ensure_schema(c, Retention())
        yield c


def _readings(
    tenant: str, kind: str, device_id: str, values: dict[int, float], metric: str
) -> list[str]:
    """Lines for readings at `NOW - seconds_before`: value."""
    key = series_key(kind, {"tenant": tenant, "device_id": device_id})
    return [
        line(key, {metric: value, "seq": seq}, NOW_NS - before * NS)
        for seq, (before, value) in enumerate(sorted(values.items(), reverse=True))
    ]


async def _store(client: InfluxClient, lines: list[str]) -> None:
    await client.write(("\n".join(lines) + "\n").encode(), retention_policy=RAW_RP)


async def _roll_up_until(client: InfluxClient, kind: str, end_ns: int) -> None:
    """Rollups of 1-minute windows up to `end_ns`, recorded as covered (as the workers do)."""
    start = end_ns - 2 * 3600 * NS
    await rebuild(client, BatchWriter(client), kind, "1m", start, end_ns)
    await write_coverage(BatchWriter(client), kind, "1m", Coverage(start, end_ns))


def pm25_rule(**changes: object) -> AlertRule:
    values: dict[str, object] = {
        "tenant": "GM0363",
        "name": "PM2.5 high",
        "type": RuleType.THRESHOLD,
        "kind": "air_quality",
        "metric": "pm25",
        "statistic": "mean",
        "window": "15m",
        "fire_at": 25.0,
        "resolve_at": 20.0,
    }
    values.update(changes)
    return AlertRule(**values)  # type: ignore[arg-type]


def _evaluator(registry: Registry, client: InfluxClient, url: str, holder: str = "a") -> Evaluator:
    config = EvaluatorConfig(holder, retry_base_s=0.0)
    return Evaluator(registry, client, [WebhookChannel(url, SECRET)], config)


async def test_the_window_statistic_is_the_aggregate_the_api_answers(
    client: InfluxClient,
) -> None:
    # Ten minutes rolled up, the last five from raw readings only.
    values = {before: 10.0 + before % 7 for before in range(10, 900, 20)}
    await _store(client, _readings("GM0363", "air_quality", "aq-1", values, "pm25"))
    await _roll_up_until(client, "air_quality", NOW_NS - 5 * 60 * NS)
    found = await device_statistics(
        client, "air_quality", "pm25", "mean", 900, NOW_NS, Selection.of_tenants(["GM0363"])
    )
    assert found.raw_minutes == 5
    api = await interval_aggregates(
        client,
        "air_quality",
        "pm25",
        Selection.of_devices(["aq-1"]),
        NOW_NS - 900 * NS,
        NOW_NS,
        "15m",
    )
    assert api.source == "rollup+raw"
    assert found.values["aq-1"] == pytest.approx(api.stats["mean"][0], rel=1e-12)
    assert found.values["aq-1"] == pytest.approx(sum(values.values()) / len(values), rel=1e-12)


async def test_a_threshold_fires_holds_in_its_band_and_resolves_below(
    registry: Registry, client: InfluxClient
) -> None:
    rule = registry.add_rule(pm25_rule())
    high = dict.fromkeys(range(30, 900, 60), 30.0)
    low = dict.fromkeys(range(30, 900, 60), 10.0)
    await _store(
        client,
        _readings("GM0363", "air_quality", "aq-1", high, "pm25")
        + _readings("GM0363", "air_quality", "aq-2", low, "pm25"),
    )
    await _roll_up_until(client, "air_quality", NOW_NS - 3 * 60 * NS)
    with webhook_receiver() as receiver:
        evaluator = _evaluator(registry, client, receiver.url)
        report = await evaluator.step(NOW)
        assert report is not None
        assert (report.rules, report.changed, report.delivered) == (1, 1, 1)
        (alert,) = registry.alerts(states=["firing"])
        assert (alert.device_id, alert.rule_id) == ("aq-1", rule.id)
        assert alert.value == pytest.approx(30.0)
        ((headers, body),) = receiver.received
        stamp = headers["x-lantaarn-timestamp"]
        expected = hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["x-lantaarn-signature"] == f"v1={expected}"
        sent = orjson.loads(body)
        assert (sent["event"], sent["alert"]["id"], sent["alert"]["deviceId"]) == (
            "firing",
            alert.id,
            "aq-1",
        )
        # 22: below the firing threshold, above the resolving one: it stays firing.
        later = NOW + timedelta(minutes=20)
        band = dict.fromkeys(range(-1190, -290, 60), 22.0)
        await _store(client, _readings("GM0363", "air_quality", "aq-1", band, "pm25"))
        await evaluator.step(later)
        assert registry.alert(alert.id).state is AlertState.FIRING
        # 15: below the resolving threshold.
        latest = NOW + timedelta(minutes=40)
        clean = dict.fromkeys(range(-2390, -1490, 60), 15.0)
        await _store(client, _readings("GM0363", "air_quality", "aq-1", clean, "pm25"))
        await evaluator.step(latest)
        resolved = registry.alert(alert.id)
        assert resolved.state is AlertState.RESOLVED
        assert [e.state for e in resolved.events] == [AlertState.FIRING, AlertState.RESOLVED]
        assert len(receiver.received) == 2
        assert orjson.loads(receiver.received[1][1])["event"] == "resolved"


async def test_a_rule_waits_its_for_duration_and_only_in_its_hours(
    registry: Registry, client: InfluxClient
) -> None:
    registry.add_rule(pm25_rule(for_s=300, active_from="12:30", active_until="13:30", zone="UTC"))
    registry.add_rule(pm25_rule(name="always", for_s=300))
    high = dict.fromkeys(range(-1800, 900, 60), 30.0)
    await _store(client, _readings("GM0363", "air_quality", "aq-1", high, "pm25"))
    with webhook_receiver() as receiver:
        evaluator = _evaluator(registry, client, receiver.url)
        await evaluator.step(NOW)
        (pending,) = registry.alerts()
        assert (pending.rule_name, pending.state) == ("always", AlertState.PENDING)
        await evaluator.step(NOW + timedelta(minutes=4))
        assert registry.alert(pending.id).state is AlertState.PENDING
        assert receiver.received == []
        await evaluator.step(NOW + timedelta(minutes=5))
        assert registry.alert(pending.id).state is AlertState.FIRING
        await evaluator.step(NOW + timedelta(minutes=31))  # 12:31 UTC: the second rule applies
        assert {a.rule_name for a in registry.alerts(states=["pending"])} == {"PM2.5 high"}


async def test_a_tenant_going_quiet_is_one_alert_not_one_per_device(
    registry: Registry, client: InfluxClient
) -> None:
    rule = AlertRule("GM0344", "silent", RuleType.SILENCE, factor=3.0, group_minimum=5)
    registry.add_rule(rule)
    # All twelve noise sensors reported an hour ago; only ut-1 still reports.
    lines = []
    for n in range(1, 13):
        times = {3600: 50.0} if n > 1 else {3600: 50.0, 30: 51.0}
        lines += _readings("GM0344", "noise", f"ut-{n}", times, "laeq")
    await _store(client, lines)
    with webhook_receiver() as receiver:
        evaluator = _evaluator(registry, client, receiver.url)
        await evaluator.step(NOW)
        (alert,) = registry.alerts()
        assert (alert.subject, alert.device_id, alert.state) == (
            "tenant:GM0344",
            None,
            AlertState.FIRING,
        )
        assert alert.summary == "11 of 12 devices of GM0344 are silent"
        assert len(receiver.received) == 1
        # The fleet comes back: the group alert resolves, no device alert was ever made.
        back = []
        for n in range(1, 13):
            back += _readings("GM0344", "noise", f"ut-{n}", {-60: 49.0}, "laeq")
        await _store(client, back)
        await evaluator.step(NOW + timedelta(minutes=2))
        assert [a.state for a in registry.alerts()] == [AlertState.RESOLVED]


async def test_one_silent_device_and_a_last_will(registry: Registry, client: InfluxClient) -> None:
    registry.add_rule(AlertRule("GM0344", "silent", RuleType.SILENCE, factor=3.0))
    lines = []
    for n in range(1, 13):
        lines += _readings("GM0344", "noise", f"ut-{n}", {3600 if n == 2 else 30: 50.0}, "laeq")
    status = series_key("device_status", {"tenant": "GM0344", "device_id": "ut-3"})
    lines.append(f'{status} state="offline" {NOW_NS - 10 * NS}')
    await _store(client, lines)
    with webhook_receiver() as receiver:
        await _evaluator(registry, client, receiver.url).step(NOW)
    found = {a.subject: a.summary for a in registry.alerts(states=["firing"])}
    assert found == {"ut-2": "no reading for 3600 s", "ut-3": "offline (last will)"}


async def test_a_device_sending_garbage_is_a_data_quality_alert(
    registry: Registry, client: InfluxClient
) -> None:
    registry.add_rule(AlertRule("GM0363", "garbage", RuleType.QUALITY, max_share=0.2))
    good = dict.fromkeys(range(30, 600, 60), 10.0)
    lines = _readings("GM0363", "air_quality", "aq-1", good, "pm25")
    lines += _readings("GM0363", "air_quality", "aq-2", good, "pm25")
    for n in range(8):
        lines.append(
            f'rejection,reason=invalid_json,worker=w0,tenant=GM0363 device_id="aq-1",'
            f'topic="t",detail="d",excerpt="x",values=1i {NOW_NS - (n + 1) * 10 * NS}'
        )
    await _store(client, lines)
    with webhook_receiver() as receiver:
        await _evaluator(registry, client, receiver.url).step(NOW)
    (alert,) = registry.alerts()
    assert alert.device_id == "aq-1"
    assert alert.summary.startswith("8 of 18 messages rejected")


async def test_a_failed_webhook_is_retried_and_its_state_is_visible(
    registry: Registry, client: InfluxClient
) -> None:
    registry.add_rule(pm25_rule())
    await _store(client, _readings("GM0363", "air_quality", "aq-1", {60: 40.0, 120: 40.0}, "pm25"))
    with webhook_receiver() as receiver:
        receiver.statuses = [503, 500]
        evaluator = _evaluator(registry, client, receiver.url)
        await evaluator.step(NOW)
        (alert,) = registry.alerts()
        (delivery,) = registry.alert(alert.id).deliveries
        assert (delivery.state, delivery.attempts, delivery.last_error) == (
            "pending",
            1,
            "HTTP 503",
        )
        await evaluator.step(NOW + timedelta(seconds=1))
        await evaluator.step(NOW + timedelta(seconds=5))
        (delivery,) = registry.alert(alert.id).deliveries
        assert (delivery.state, delivery.attempts) == ("delivered", 3)
        # Every attempt carried the same delivery id, so a receiver can drop repeats.
        assert len({h["x-lantaarn-delivery"] for h, _ in receiver.received}) == 1
        assert len(receiver.received) == 3


async def test_two_replicas_notify_once(registry: Registry, client: InfluxClient) -> None:
    registry.add_rule(pm25_rule())
    await _store(client, _readings("GM0363", "air_quality", "aq-1", {60: 40.0}, "pm25"))
    with webhook_receiver() as receiver:
        first = _evaluator(registry, client, receiver.url, "a")
        second = _evaluator(registry, client, receiver.url, "b")
        assert await first.step(NOW) is not None
        assert await second.step(NOW) is None  # the lease is a's
        assert await first.step(NOW) is not None
        assert len(receiver.received) == 1


async def test_a_device_taken_out_of_a_rule_resolves_its_alert(
    registry: Registry, client: InfluxClient
) -> None:
    rule = registry.add_rule(pm25_rule())
    await _store(client, _readings("GM0363", "air_quality", "aq-1", {60: 40.0}, "pm25"))
    with webhook_receiver() as receiver:
        evaluator = _evaluator(registry, client, receiver.url)
        await evaluator.step(NOW)
        (alert,) = registry.alerts(states=["firing"])
        registry.update_rule(rule.id, {"device_ids": ("aq-2", "aq-3")})
        await evaluator.step(NOW + timedelta(seconds=10))
        assert registry.alert(alert.id).state is AlertState.RESOLVED
        assert registry.alert(alert.id).events[-1].note == "device no longer watched by the rule"


async def test_kept_rollups_are_read_once_and_still_give_the_windows_mean(
    client: InfluxClient,
) -> None:
    values = {before: 10.0 + before % 11 for before in range(10, 1800, 20)}
    await _store(client, _readings("GM0363", "air_quality", "aq-1", values, "pm25"))
    await _roll_up_until(client, "air_quality", NOW_NS - 5 * 60 * NS)
    cache = MinuteRollups("air_quality", "pm25")
    tenants = Selection.of_tenants(["GM0363"])
    await device_statistics(client, "air_quality", "pm25", "mean", 900, NOW_NS, tenants, cache)
    assert len(cache._minutes) == 10  # the rolled-up part of the window
    # A stored rollup of a kept minute changes: the cache does not read it again.
    older = NOW_NS - 10 * 60 * NS
    key = series_key("air_quality_1m", {"tenant": "GM0363", "device_id": "aq-1"})
    await client.write(f"{key} pm25_mean=1000.0 {older}\n".encode(), retention_policy="rollup_1m")
    again = await device_statistics(
        client, "air_quality", "pm25", "mean", 900, NOW_NS, tenants, cache
    )
    fresh = await device_statistics(client, "air_quality", "pm25", "mean", 900, NOW_NS, tenants)
    assert again.values["aq-1"] < 30 < fresh.values["aq-1"]
    # Five minutes later, with those minutes rolled up: only they are read, the rest kept.
    later = NOW_NS + 5 * 60 * NS
    await _roll_up_until(client, "air_quality", later)
    moved = await device_statistics(
        client, "air_quality", "pm25", "mean", 900, later, tenants, cache
    )
    assert sorted(cache._minutes)[0] >= later - 61 * 60 * NS  # none older than an hour
    inside = [v for before, v in values.items() if before <= 600]  # [NOW - 10 min, NOW)
    assert moved.values["aq-1"] == pytest.approx(sum(inside) / len(inside), rel=1e-12)


async def test_rules_of_several_windows_share_kept_rollups_at_once(client: InfluxClient) -> None:
    values = {before: 5.0 + before % 13 for before in range(10, 4200, 30)}
    await _store(client, _readings("GM0363", "air_quality", "aq-1", values, "pm25"))
    cache = MinuteRollups("air_quality", "pm25")
    tenants = Selection.of_tenants(["GM0363"])
    for now in (NOW_NS - 3 * 60 * NS, NOW_NS - 2 * 60 * NS, NOW_NS - 60 * NS):
        # Each round a newly rolled-up minute: the long window reads it while the short
        # ones look at the cache.
        await _roll_up_until(client, "air_quality", now)
        windows = (3600, 300, 900, 60)
        shared = await asyncio.gather(
            *(
                device_statistics(client, "air_quality", "pm25", "mean", w, now, tenants, cache)
                for w in windows
            )
        )
        for window, found in zip(windows, shared, strict=True):
            alone = await device_statistics(
                client, "air_quality", "pm25", "mean", window, now, tenants
            )
            assert found.values == pytest.approx(alone.values, rel=1e-12), window


@pytest.fixture
def postgres_registry() -> Iterator[Registry]:
    """A registry on the local PostgreSQL (a schema of its own), shared by two evaluators."""
    from tests.devices.conftest import _postgres_schema

    for url in _postgres_schema():
        with Registry(url) as opened:
            opened.add_tenant(Tenant("GM0363", "Amsterdam"))
            opened.add_devices([Device("aq-1", "GM0363", "air_quality", "AQ 1", 52.37, 4.9)])
            yield opened


async def test_replicas_stepping_at_once_on_postgresql_notify_once(
    postgres_registry: Registry, client: InfluxClient
) -> None:
    postgres_registry.add_rule(pm25_rule())
    await _store(client, _readings("GM0363", "air_quality", "aq-1", {60: 40.0}, "pm25"))
    with webhook_receiver() as receiver:
        replicas = [_evaluator(postgres_registry, client, receiver.url, holder) for holder in "abc"]
        for moment in (NOW, NOW + timedelta(seconds=10), NOW + timedelta(seconds=20)):
            reports = await asyncio.gather(*(r.step(moment) for r in replicas))
            assert sum(r is not None for r in reports) == 1  # one holds the lease
        assert len(receiver.received) == 1
        (alert,) = postgres_registry.alerts()
        assert [e.state for e in postgres_registry.alert(alert.id).events] == [AlertState.FIRING]


async def test_run_evaluates_and_sends_until_stopped_then_gives_the_lease_up(
    registry: Registry, client: InfluxClient
) -> None:
    registry.add_rule(pm25_rule())
    key = series_key("air_quality", {"tenant": "GM0363", "device_id": "aq-1"})
    now_ns = time.time_ns()
    await _store(client, [line(key, {"pm25": 40.0, "seq": 1}, now_ns - 10 * NS)])
    with webhook_receiver() as receiver:
        config = EvaluatorConfig("runner", interval_s=0.2, lease_s=30)
        evaluator = Evaluator(registry, client, [WebhookChannel(receiver.url, SECRET)], config)
        stop = asyncio.Event()
        task = asyncio.create_task(evaluator.run(stop))
        arrived = await asyncio.to_thread(receiver.arrived.wait, 60)
        stop.set()
        await asyncio.wait_for(task, 30)
    assert arrived
    assert orjson.loads(receiver.received[0][1])["alert"]["deviceId"] == "aq-1"
    # The lease was given up: another replica takes it at once.
    assert registry.take_lease("alerts", "other", timedelta(seconds=30))
