"""Lamp faults from each lamppost's latest reading and the sun at the lamp (devices.sun).

- burning in daylight: dim level above zero (or power drawn) while the sun is up, not within
  `margin_s` of sunrise or sunset;
- dark at night: dim level zero while the sun is down, away from the margins (a tenant that
  switches lamps off at night on purpose switches this rule off, or narrows its box);
- no power: lit (dim level above zero) but drawing under `NO_POWER_W`: a broken lamp or driver;
- a lamp failure the controller itself reports (`lamp_failure` 1);
- power out of line: watts per percent of dim level differ from the lamp's own usual by more
  than `power_tolerance` (a share).

A lamp's usual is its own history, not its neighbours': a street mixes 28 W and 110 W
luminaires, so a fleet median called healthy lamps faulty at 0.4x and 1.6x (issue 14). The
usual is the median, over the lit hours of the last `BASELINE_S`, of each hour's mean power
over its mean dim level (the 1-hour rollups, read once an hour): a driver failing now stands
out against it, and a few bad hours in the history do not move it. A lamp with fewer than
`MIN_BASELINE_HOURS` lit hours of history is not judged on its power (its other faults are),
nor is any lamp when the workers keep no 1-hour rollups. What the own usual cannot see: a lamp
wrong from the day it was fitted, or a fault lasting more than half a week's lit hours (it
becomes the usual); a rated power per lamp in the registry would catch those.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache

from alerting.lifecycle import Observation
from devices.alert_rules import AlertRule
from devices.sun import sun_times
from timeseries.client import InfluxClient
from timeseries.schema import quote_ident, rollup_measurement, rollup_policy
from timeseries.selection import Selection

NO_POWER_W = 1.0  # watts below which a lit lamp draws nothing
MIN_LIT_LEVEL = 5.0  # % dim level from which power per level is compared
NS = 1_000_000_000
HOUR_NS = 3600 * NS
BASELINE_S = 7 * 86400  # how far back a lamp's usual power per level is learned
MIN_BASELINE_HOURS = 6  # lit hours of history before a lamp's power is judged


async def usual_power(client: InfluxClient, lamps: Selection, end_ns: int) -> dict[str, float]:
    """Each selected lamp's usual watts per percent of dim level over [end - BASELINE_S, end):
    the median of its lit hours' mean power / mean dim level (1-hour rollups), for lamps with
    at least MIN_BASELINE_HOURS such hours. InfluxDB computes the median: one row per lamp."""
    start_ns = end_ns - BASELINE_S * NS
    source = (
        f"{quote_ident(rollup_policy('1h'))}.{quote_ident(rollup_measurement('lamppost', '1h'))}"
    )
    span = f"time >= {int(start_ns)} AND time < {int(end_ns)}"
    statements = [
        'SELECT median("ratio"), count("ratio") FROM ('  # noqa: S608
        f'SELECT "active_power_mean" / "dim_level_mean" AS "ratio" FROM {source} '
        f'WHERE {span} AND "dim_level_mean" >= {MIN_LIT_LEVEL} '
        f'AND "active_power_mean" >= {NO_POWER_W}{where} GROUP BY "device_id"'
        f') WHERE {span} GROUP BY "device_id"'
        for where in lamps.conditions()
    ]
    if not statements:
        return {}
    usual: dict[str, float] = {}
    for result in await client.query(statements):
        for series in result:
            for row in series.values:
                median, hours = row[1], row[2]
                if (
                    isinstance(median, int | float)
                    and isinstance(hours, int | float)
                    and hours >= MIN_BASELINE_HOURS
                    and median > 0.0
                ):
                    usual[series.tags.get("device_id", "")] = float(median)
    return usual


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
    usual: Mapping[str, float],
) -> dict[str, Observation]:
    """Faults per lamp: (device id, latitude, longitude, latest metrics) and each lamp's usual
    watts per percent of dim level (`usual_power`; absent: not known yet) in, observations out."""
    t = now.timestamp()
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
        normal = usual.get(device_id)
        if (
            normal is not None
            and level is not None
            and power is not None
            and level >= MIN_LIT_LEVEL
            and power >= NO_POWER_W
            and abs(power / level / normal - 1.0) > rule.power_tolerance
        ):
            faults.append(
                f"draws {power:g} W at {level:g} %, "
                f"{power / level / normal:.1f}× its usual power for that level"
            )
        if faults:
            out[device_id] = Observation(
                device_id, device_id, float(len(faults)), True, False, "; ".join(faults)
            )
    return out
