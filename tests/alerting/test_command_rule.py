"""The built-in rule "a lamp that keeps refusing commands", from the registry's real command
history: refused, failed and unanswered commands count, an obeyed one clears it, other tenants'
lamps are not its business; and end to end with simulated lamps answering over a real broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting import Evaluator, EvaluatorConfig
from devices import Device, Registry, Tenant
from devices.alert_rules import AlertState, builtin_for, rule_problems
from devices.command_history import Answer, CommandStore, Issuer, NewCommand
from lantaarn.localstack import Influx, Mosquitto
from tests.broker.test_commands_mqtt import _platform, dim_every_lamp
from timeseries import InfluxClient, InfluxConfig

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
OPERATOR = Issuer("key-1", "operator")


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(url) as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_tenant(Tenant("GM0344", "Utrecht"))
        registry.add_devices(
            [Device(f"lp-{n}", "GM0363", "lamppost", f"L{n}", 52.37, 4.9) for n in range(1, 5)]
            + [Device("ut-lp", "GM0344", "lamppost", "U", 52.09, 5.12)]
        )
    return url


@pytest.fixture
async def client(influx: Influx) -> AsyncIterator[InfluxClient]:
    # The command rule reads no readings; the evaluator still holds a real client.
    async with InfluxClient(InfluxConfig(influx.url, f"cr_{uuid.uuid4().hex[:8]}")) as opened:
        yield opened


def _command(store: CommandStore, tenant: str, device_id: str, at: datetime) -> str:
    (made,), _ = store.create(
        [NewCommand(tenant, device_id, "set_dim_level", {"level": 40}, at + timedelta(seconds=30))],
        OPERATOR,
        now=at,
    )
    return made.id


def _answered(store: CommandStore, tenant: str, device_id: str, status: str, at: datetime) -> None:
    command_id = _command(store, tenant, device_id, at)
    store.record_answers([Answer(tenant, device_id, command_id, status, "in manual override")], at)


def test_the_builtin_is_a_valid_lamppost_rule_with_a_long_window() -> None:
    rule = builtin_for("lamp-refusing", "GM0363")
    assert rule is not None
    assert rule.kind == "lamppost"
    assert rule.window_s == 6 * 3600
    assert rule_problems(rule) == []
    # Six hours is for command rules only: thresholds keep the rollup windows.
    assert rule_problems(replace(rule, max_failures=0))[0].field == "max_failures"
    threshold = builtin_for("pm25-who", "GM0363")
    assert threshold is not None
    assert [p.field for p in rule_problems(replace(threshold, window="6h"))] == ["window"]


async def test_a_lamp_refusing_three_commands_fires_and_resolves_once_it_obeys(
    url: str, client: InfluxClient
) -> None:
    with Registry(url) as registry, CommandStore(url) as store:
        rule = builtin_for("lamp-refusing", "GM0363")
        assert rule is not None
        registry.add_rule(rule)
        start = NOW - timedelta(hours=2)
        for n in range(3):
            at = start + timedelta(minutes=10 * n)
            # lp-1 refuses everything; lp-2 twice (below the rule's 3); lp-3 refused three
            # times and then obeyed; Utrecht's lamp refuses too, but Utrecht has no rule.
            _answered(store, "GM0363", "lp-1", "refused", at)
            if n < 2:
                _answered(store, "GM0363", "lp-2", "refused", at)
            _answered(store, "GM0363", "lp-3", "failed", at)
            _answered(store, "GM0344", "ut-lp", "refused", at)
        _answered(store, "GM0363", "lp-3", "done", start + timedelta(minutes=40))
        # lp-4 never answers: two expire, and one refusal makes three not obeyed.
        _command(store, "GM0363", "lp-4", start)
        _command(store, "GM0363", "lp-4", start + timedelta(minutes=5))
        assert store.expire_due(start + timedelta(minutes=10)) == 2
        _answered(store, "GM0363", "lp-4", "refused", start + timedelta(minutes=50))
        # Commands older than the window do not count (lp-2's third refusal is 7 h old).
        _answered(store, "GM0363", "lp-2", "refused", NOW - timedelta(hours=7))

        evaluator = Evaluator(registry, client, [], EvaluatorConfig("a"))
        await evaluator.evaluate(NOW)
        firing = {a.subject: a for a in registry.alerts(states=["firing"])}
        assert set(firing) == {"lp-1", "lp-4"}
        assert firing["lp-1"].value == 3.0
        assert "3 refused" in firing["lp-1"].summary
        assert "(1 refused, 2 expired)" in firing["lp-4"].summary

        # lp-1 obeys again: its alert resolves; lp-4 stays.
        _answered(store, "GM0363", "lp-1", "done", NOW + timedelta(minutes=1))
        await evaluator.evaluate(NOW + timedelta(minutes=2))
        assert {a.subject for a in registry.alerts(states=["firing"])} == {"lp-4"}
        resolved = registry.alerts(states=["resolved"])
        assert [a.subject for a in resolved] == ["lp-1"]

        # Six hours on, lp-4's failures have left the window: resolved too.
        await evaluator.evaluate(NOW + timedelta(hours=6))
        assert registry.alerts(states=[s.value for s in AlertState if s.active]) == []


async def test_a_refusing_simulated_lamp_over_a_real_broker_fires(
    tmp_path: Path, mosquitto: Mosquitto, client: InfluxClient
) -> None:
    async with _platform(tmp_path, mosquitto, 4) as platform:
        simulated = platform.simulated()
        refusing = {simulated[1].device.device_id}
        url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
        with Registry(url) as registry:
            rule = builtin_for("lamp-refusing", "GM0363")
            assert rule is not None
            registry.add_rule(rule)
            async with platform.responder(simulated, "fleet", refusing=refusing):
                await dim_every_lamp(platform, (30, 50, 70))
            evaluator = Evaluator(registry, client, [], EvaluatorConfig("a"))
            await evaluator.evaluate()
            firing = registry.alerts(states=["firing"])
            assert [a.device_id for a in firing] == sorted(refusing)
            # The operator of Utrecht does not see Amsterdam's alert.
            seen = await platform.http.get("/v1/alerts", headers=platform.headers("operator_b"))
            assert seen.json()["items"] == []
            mine = await platform.http.get("/v1/alerts", headers=platform.headers("operator_a"))
            assert [a["deviceId"] for a in mine.json()["items"]] == sorted(refusing)
