"""Lamp faults from each lamppost's latest reading and the sun at the lamp (devices.sun).

- burning in daylight: dim level above zero (or power drawn) while the sun is up, not within
  `margin_s` of sunrise or sunset;
- dark at night: dim level zero while the sun is down, away from the margins (a tenant that
  switches lamps off at night on purpose switches this rule off, or narrows its box);
- no power: lit (dim level above zero) but drawing under `NO_POWER_W`: a broken lamp or driver;
- a lamp failure the controller itself reports (`lamp_failure` 1);
- power out of line: watts per percent of dim level differ from the median of the rule's lamps
  by more than `power_tolerance` (a share), when at least `MIN_PEERS` lamps are lit.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from functools import lru_cache

from alerting.lifecycle import Observation
from devices.alert_rules import AlertRule
from devices.sun import sun_times

NO_POWER_W = 1.0  # watts below which a lit lamp draws nothing
MIN_LIT_LEVEL = 5.0  # % dim level from which power per level is compared
MIN_PEERS = 5


@lru_cache(maxsize=4096)
def _sun(
    day_ordinal: int, latitude: float, longitude: float
) -> tuple[float | None, float | None, bool]:
    found = sun_times(datetime.fromordinal(day_ordinal).date(), latitude, longitude)
    return found.sunrise, found.sunset, found.always_up


def is_dark(t: float, latitude: float, longitude: float) -> bool:
    """Whether the sun is down at `t` (epoch seconds) at a place (degrees)."""
    day = datetime.fromtimestamp(t, UTC).date().toordinal()
    # A hundredth of a degree is about a kilometre: the same sun, and a small cache.
    rise, set_, always_up = _sun(day, round(latitude, 2), round(longitude, 2))
    if rise is None or set_ is None:
        return not always_up
    return t < rise or t >= set_


def _period(t: float, margin_s: float, latitude: float, longitude: float) -> str | None:
    """`day` or `night` when it is so for the whole margin around `t`; None near dawn or dusk."""
    states = {is_dark(t + d, latitude, longitude) for d in (-margin_s, 0.0, margin_s)}
    if states == {True}:
        return "night"
    if states == {False}:
        return "day"
    return None


def lamp_faults(
    rule: AlertRule,
    now: datetime,
    lamps: list[tuple[str, float, float, dict[str, float]]],
) -> dict[str, Observation]:
    """Faults per lamp: (device id, latitude, longitude, latest metrics) in, observations out."""
    t = now.timestamp()
    ratios = [
        m["active_power"] / m["dim_level"]
        for _, _, _, m in lamps
        if m.get("dim_level", 0.0) >= MIN_LIT_LEVEL and m.get("active_power", 0.0) >= NO_POWER_W
    ]
    median = statistics.median(ratios) if len(ratios) >= MIN_PEERS else None
    out: dict[str, Observation] = {}
    for device_id, latitude, longitude, metrics in lamps:
        level = metrics.get("dim_level")
        power = metrics.get("active_power")
        lit = (level is not None and level > 0.0) or (
            level is None and power is not None and power >= NO_POWER_W
        )
        faults = []
        period = _period(t, rule.margin_s, latitude, longitude)
        if period == "day" and lit:
            faults.append("burning in daylight")
        if period == "night" and level is not None and level <= 0.0:
            faults.append("dark at night")
        if level is not None and level > 0.0 and power is not None and power < NO_POWER_W:
            faults.append(f"lit at {level:g} % but drawing {power:g} W")
        if metrics.get("lamp_failure", 0.0) >= 0.5:
            faults.append("reports a lamp failure")
        if (
            median is not None
            and level is not None
            and power is not None
            and level >= MIN_LIT_LEVEL
            and power >= NO_POWER_W
            and abs(power / level / median - 1.0) > rule.power_tolerance
        ):
            faults.append(
                f"draws {power:g} W at {level:g} %, "
                f"{power / level / median:.1f}× the usual power for its level"
            )
        if faults:
            out[device_id] = Observation(
                device_id, device_id, float(len(faults)), True, False, "; ".join(faults)
            )
    return out
