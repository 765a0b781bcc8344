"""The alert lifecycle as a pure function, and the rule's own tests (thresholds, clock hours)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from alerting.lifecycle import Observation, decide
from devices.alert_rules import Alert, AlertRule, AlertState, Direction, RuleType

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULE = AlertRule(
    "GM0363",
    "pm25",
    RuleType.THRESHOLD,
    kind="air_quality",
    metric="pm25",
    statistic="mean",
    fire_at=25.0,
    resolve_at=20.0,
    for_s=300,
    id="r1",
)


def seen(value: float, rule: AlertRule = RULE) -> Observation:
    return Observation("d1", "d1", value, rule.fires(value), rule.resolves(value), f"{value}")


def alert(state: AlertState, started: datetime = T0) -> Alert:
    return Alert(
        "a1", "r1", "pm25", "GM0363", "d1", "d1", state, 30.0, "30", started, None, None, None, None
    )


def test_a_new_condition_is_pending_until_its_for_duration_passes() -> None:
    (change,) = decide(RULE, {"d1": seen(30.0)}, {}, T0, absent_resolves=False)
    assert (change.state, change.alert_id) == (AlertState.PENDING, None)
    pending = {"d1": alert(AlertState.PENDING)}
    assert (
        decide(
            RULE, {"d1": seen(30.0)}, pending, T0 + timedelta(seconds=299), absent_resolves=False
        )
        == []
    )
    (fired,) = decide(
        RULE, {"d1": seen(30.0)}, pending, T0 + timedelta(seconds=300), absent_resolves=False
    )
    assert (fired.state, fired.alert_id) == (AlertState.FIRING, "a1")


def test_without_a_for_duration_it_fires_at_once() -> None:
    rule = replace(RULE, for_s=0.0)
    (change,) = decide(rule, {"d1": seen(30.0, rule)}, {}, T0, absent_resolves=False)
    assert change.state is AlertState.FIRING


def test_a_pending_alert_that_clears_resolves_quietly() -> None:
    (change,) = decide(
        RULE, {"d1": seen(24.0)}, {"d1": alert(AlertState.PENDING)}, T0, absent_resolves=False
    )
    assert (change.state, change.note) == (AlertState.RESOLVED, "condition cleared before firing")


@pytest.mark.parametrize("state", [AlertState.FIRING, AlertState.ACKNOWLEDGED])
def test_hysteresis_keeps_it_open_in_the_band_and_resolves_below(state: AlertState) -> None:
    open_alert = {"d1": alert(state)}
    assert decide(RULE, {"d1": seen(22.0)}, open_alert, T0, absent_resolves=False) == []
    assert decide(RULE, {"d1": seen(26.0)}, open_alert, T0, absent_resolves=False) == []
    (change,) = decide(RULE, {"d1": seen(19.9)}, open_alert, T0, absent_resolves=False)
    assert change.state is AlertState.RESOLVED


def test_a_subject_no_longer_observed_resolves_only_where_absence_means_fine() -> None:
    open_alert = {"d1": alert(AlertState.FIRING)}
    assert decide(RULE, {}, open_alert, T0, absent_resolves=False) == []
    (change,) = decide(RULE, {}, open_alert, T0, absent_resolves=True)
    assert change.state is AlertState.RESOLVED


def test_below_thresholds_mirror_above() -> None:
    rule = AlertRule(
        "GM0363",
        "low",
        RuleType.THRESHOLD,
        kind="water_level",
        metric="level",
        statistic="last",
        direction=Direction.BELOW,
        fire_at=-1.0,
        resolve_at=-0.8,
    )
    assert rule.fires(-1.1)
    assert not rule.fires(-0.9)
    assert not rule.resolves(-0.9)
    assert rule.resolves(-0.7)


def test_night_hours_cross_midnight_in_local_time_across_summer_time() -> None:
    night = AlertRule("GM0363", "n", RuleType.THRESHOLD, active_from="23:00", active_until="07:00")
    # Winter (UTC+1): 22:30 UTC is 23:30 local; summer (UTC+2): 21:30 UTC is 23:30 local.
    assert night.active_at(datetime(2026, 12, 1, 22, 30, tzinfo=UTC))
    assert not night.active_at(datetime(2026, 12, 1, 21, 30, tzinfo=UTC))
    assert night.active_at(datetime(2026, 7, 1, 21, 30, tzinfo=UTC))
    assert night.active_at(datetime(2026, 7, 1, 4, 59, tzinfo=UTC))  # 06:59 local
    assert not night.active_at(datetime(2026, 7, 1, 5, 0, tzinfo=UTC))  # 07:00 local
    assert AlertRule("GM0363", "always", RuleType.THRESHOLD).active_at(T0)
