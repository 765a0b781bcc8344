"""Alert rules, alerts, their history, deliveries and the lease, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from devices import InvalidDevice, NotFound, Registry
from devices.alert_rules import (
    AlertConflict,
    AlertRule,
    AlertState,
    Change,
    Direction,
    RuleType,
    builtin_for,
)
from devices.model import BoundingBox

T0 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


def pm25_rule(tenant: str = "GM0363", **changes: object) -> AlertRule:
    rule = AlertRule(
        tenant,
        "PM2.5 high",
        RuleType.THRESHOLD,
        kind="air_quality",
        metric="pm25",
        statistic="mean",
        window="1h",
        fire_at=25.0,
        resolve_at=20.0,
        for_s=300,
        bbox=BoundingBox(4.7, 52.2, 5.1, 52.5),
    )
    return replace(rule, **changes)  # type: ignore[arg-type]


def test_rules_are_stored_read_changed_and_deleted(registry: Registry) -> None:
    made = registry.add_rule(pm25_rule(), now=T0)
    assert made.id
    assert made.revision == 1
    assert registry.rule(made.id) == made
    assert registry.rule(made.id).bbox == BoundingBox(4.7, 52.2, 5.1, 52.5)
    other = registry.add_rule(pm25_rule("GM0344"), now=T0)
    assert [r.id for r in registry.rules(tenants=["GM0363"])] == [made.id]
    changed = registry.update_rule(made.id, {"fire_at": 30.0, "enabled": False}, now=T0)
    assert (changed.fire_at, changed.enabled, changed.revision) == (30.0, False, 2)
    assert [r.id for r in registry.rules(enabled_only=True)] == [other.id]
    registry.delete_rule(made.id)
    with pytest.raises(NotFound):
        registry.rule(made.id)


def test_a_bad_rule_is_refused_listing_every_problem(registry: Registry) -> None:
    bad = pm25_rule(
        statistic="energetic_mean", resolve_at=30.0, active_from="25:00", zone="Mars/Base"
    )
    with pytest.raises(InvalidDevice) as caught:
        registry.add_rule(bad)
    fields = {p.field for p in caught.value.problems}
    assert {"statistic", "resolve_at", "active_from", "zone"} <= fields
    with pytest.raises(InvalidDevice) as caught:
        registry.add_rule(pm25_rule("GM9999"))
    assert caught.value.field == "tenant"
    made = registry.add_rule(pm25_rule())
    with pytest.raises(InvalidDevice) as caught:
        registry.update_rule(made.id, {"tenant": "GM0344"})
    assert caught.value.field == "tenant"
    # A below-threshold must resolve above its firing value.
    with pytest.raises(InvalidDevice):
        registry.add_rule(pm25_rule(direction=Direction.BELOW, fire_at=5.0, resolve_at=4.0))


def test_builtins_become_rules_of_the_tenant(registry: Registry) -> None:
    noise = builtin_for("night-noise", "GM0344")
    assert noise is not None
    made = registry.add_rule(noise)
    stored = registry.rule(made.id)
    assert (stored.tenant, stored.builtin, stored.active_from) == ("GM0344", "night-noise", "23:00")
    assert builtin_for("no-such-thing", "GM0344") is None


def test_an_alert_lives_pending_firing_acknowledged_resolved(registry: Registry) -> None:
    rule = registry.add_rule(pm25_rule(), now=T0)
    channels = ["webhook", "email"]
    (alert_id,) = registry.apply(
        [Change(rule, "aq-1", "aq-1", AlertState.PENDING, 27.0, "27 > 25")], channels, now=T0
    )
    assert registry.due_deliveries("webhook", now=T0) == []  # pending notifies no one
    with pytest.raises(AlertConflict):  # only a firing alert is acknowledged
        registry.acknowledge(alert_id, "looking", by="key-1", now=T0)
    fire_at = T0 + timedelta(minutes=5)
    registry.apply(
        [Change(rule, "aq-1", "aq-1", AlertState.FIRING, 28.0, "28 > 25", alert_id)],
        channels,
        now=fire_at,
    )
    (due,) = registry.due_deliveries("webhook", now=fire_at)
    assert (due[1].id, due[2], due[1].state) == (alert_id, "firing", AlertState.FIRING)
    acked = registry.acknowledge(alert_id, "crew sent", by="key-1", now=fire_at + timedelta(1))
    assert (acked.state, acked.note) == (AlertState.ACKNOWLEDGED, "crew sent")
    # The condition still holding does not bring an acknowledged alert back to firing.
    registry.apply(
        [Change(rule, "aq-1", "aq-1", AlertState.FIRING, 29.0, "29", alert_id)], channels
    )
    assert registry.alert(alert_id).state is AlertState.ACKNOWLEDGED
    done_at = fire_at + timedelta(hours=2)
    registry.apply(
        [Change(rule, "aq-1", "aq-1", AlertState.RESOLVED, 19.0, "19 < 20", alert_id)],
        channels,
        now=done_at,
    )
    final = registry.alert(alert_id)
    assert [(e.state, e.at) for e in final.events] == [
        (AlertState.PENDING, T0),
        (AlertState.FIRING, fire_at),
        (AlertState.ACKNOWLEDGED, fire_at + timedelta(1)),
        (AlertState.RESOLVED, done_at),
    ]
    assert (final.events[2].note, final.events[2].by) == ("crew sent", "key-1")
    assert final.resolved_at == done_at
    assert sorted((d.channel, d.event) for d in final.deliveries) == [
        ("email", "firing"),
        ("email", "resolved"),
        ("webhook", "firing"),
        ("webhook", "resolved"),
    ]
    with pytest.raises(AlertConflict):
        registry.acknowledge(alert_id, "too late", by=None)
    assert registry.open_alerts() == {}


def test_a_pending_alert_that_clears_never_notifies(registry: Registry) -> None:
    rule = registry.add_rule(pm25_rule(), now=T0)
    (alert_id,) = registry.apply(
        [Change(rule, "aq-1", "aq-1", AlertState.PENDING, 27.0, "27")], ["webhook"], now=T0
    )
    registry.apply(
        [Change(rule, "aq-1", "aq-1", AlertState.RESOLVED, 24.0, "24", alert_id)], ["webhook"]
    )
    assert registry.alert(alert_id).deliveries == ()


def test_alerts_are_filtered_by_state_tenant_and_device(registry: Registry) -> None:
    mine = registry.add_rule(pm25_rule(), now=T0)
    theirs = registry.add_rule(pm25_rule("GM0344"), now=T0)
    registry.apply(
        [
            Change(mine, "aq-1", "aq-1", AlertState.FIRING, 30.0, "30"),
            Change(mine, "aq-2", "aq-2", AlertState.PENDING, 26.0, "26"),
            Change(theirs, "ut-1", "ut-1", AlertState.FIRING, 40.0, "40"),
        ],
        [],
        now=T0,
    )
    assert {a.subject for a in registry.alerts(tenants=["GM0363"])} == {"aq-1", "aq-2"}
    assert [a.subject for a in registry.alerts(states=["firing"], tenants=["GM0363"])] == ["aq-1"]
    assert [a.subject for a in registry.alerts(device_id="ut-1")] == ["ut-1"]
    # Deleting a rule resolves its open alerts; they stay in the history.
    registry.delete_rule(mine.id)
    assert {a.state for a in registry.alerts(tenants=["GM0363"])} == {AlertState.RESOLVED}


def test_failed_deliveries_wait_for_their_retry_then_give_up(registry: Registry) -> None:
    rule = registry.add_rule(pm25_rule(), now=T0)
    registry.apply(
        [Change(rule, "aq-1", "aq-1", AlertState.FIRING, 30.0, "30")], ["webhook"], now=T0
    )
    ((delivery_id, alert, _event, attempts),) = registry.due_deliveries("webhook", now=T0)
    assert attempts == 0
    registry.delivery_failed([delivery_id], "HTTP 503", retry_in=timedelta(seconds=10), now=T0)
    assert registry.due_deliveries("webhook", now=T0 + timedelta(seconds=9)) == []
    ((_, _, _, attempts),) = registry.due_deliveries("webhook", now=T0 + timedelta(seconds=10))
    assert attempts == 1
    registry.delivery_failed([delivery_id], "HTTP 503", retry_in=None, now=T0)
    (delivery,) = registry.alert(alert.id).deliveries
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("failed", 2, "HTTP 503")
    assert registry.due_deliveries("webhook", now=T0 + timedelta(days=1)) == []


def test_one_replica_holds_the_lease_until_it_runs_out(registry: Registry) -> None:
    ttl = timedelta(seconds=30)
    assert registry.take_lease("alerts", "a", ttl, now=T0)
    assert not registry.take_lease("alerts", "b", ttl, now=T0 + timedelta(seconds=10))
    assert registry.take_lease("alerts", "a", ttl, now=T0 + timedelta(seconds=20))  # renewed
    assert not registry.take_lease("alerts", "b", ttl, now=T0 + timedelta(seconds=45))
    assert registry.take_lease("alerts", "b", ttl, now=T0 + timedelta(seconds=51))  # ran out
    assert not registry.take_lease("alerts", "a", ttl, now=T0 + timedelta(seconds=52))
    registry.release_lease("alerts", "b")
    assert registry.take_lease("alerts", "a", ttl, now=T0 + timedelta(seconds=53))


def test_disabling_a_rule_resolves_its_open_alerts(registry: Registry) -> None:
    rule = registry.add_rule(pm25_rule(), now=T0)
    (alert_id,) = registry.apply(
        [Change(rule, "aq-1", "aq-1", AlertState.FIRING, 30.0, "30")], ["webhook"], now=T0
    )
    registry.update_rule(rule.id, {"enabled": False}, now=T0 + timedelta(minutes=1))
    alert = registry.alert(alert_id)
    assert alert.state is AlertState.RESOLVED
    assert alert.events[-1].note == "rule disabled"
    assert [(d.event, d.state) for d in alert.deliveries] == [
        ("firing", "pending"),
        ("resolved", "pending"),
    ]
