"""The energy of a group of lampposts over a span: what they used and what full light would have.

Built from each lamp's hours (the 1-hour rollups where they are complete, else raw readings
aggregated per hour by the same numpy functions as the rollups):

- **measured**: the increase of `active_energy` (the lamp's meter, kWh), standby included.
- **at 100 %**: per lamp and hour, its full power times the hours it burned in that hour.
  A lamp's power follows its dim level, P = k·d, so the ratio of the hour's mean power to its
  mean dim level is k even when the level changed within the hour (both means weigh the same
  readings); the hours burned are the increase of `operating_hours`. So:
  full = mean(active_power) / mean(dim_level) * 100 % * Δoperating_hours. Hours whose dim
  level averaged 0 (off all hour) add nothing; a lamp's standby draw (under a watt) is read
  as part of k, which errs a little toward a larger full figure at deep dim levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from devices import DEVICE_KINDS
from timeseries.aggregate import STATS, Windows, aggregate
from timeseries.client import InfluxClient
from timeseries.queries import read_rollups
from timeseries.rollups import CONTEXT_NS, read_coverage, read_raw, window_ns
from timeseries.selection import Selection

KIND: Final = "lamppost"
_HOUR_NS: Final = window_ns("1h")
# metric -> the statistic of it the figure needs
_NEEDED: Final = {
    "active_energy": "increase",
    "operating_hours": "increase",
    "active_power": "mean",
    "dim_level": "mean",
}

Hourly = dict[tuple[str, int], float]  # (device id, hour start ns) -> value


@dataclass(frozen=True, slots=True)
class EnergyFigure:
    """Energy of a group over [start, end): measured and at full light (kWh), and the lamps
    that reported; `source` says whether rollups, raw readings or both were read."""

    measured_kwh: float
    full_kwh: float
    lamps_reporting: int
    source: str

    @property
    def saved_kwh(self) -> float:
        """Energy dimming saved against full light (kWh)."""
        return self.full_kwh - self.measured_kwh

    @property
    def saved_share(self) -> float | None:
        """The share of full-light energy saved (0..1), None without any."""
        return None if self.full_kwh <= 0 else self.saved_kwh / self.full_kwh


async def _hourly(
    client: InfluxClient,
    metric: str,
    selection: Selection,
    start_ns: int,
    end_ns: int,
    rolled_end: int,
) -> Hourly:
    """One statistic of a metric per lamp and hour in [start, end)."""
    aggregation = DEVICE_KINDS[KIND].metric(metric).aggregation  # type: ignore[union-attr]
    names = STATS[aggregation]
    stat = _NEEDED[metric]
    at = names.index(stat)
    out: Hourly = {}
    if rolled_end > start_ns:
        owners, rows = await read_rollups(
            client, KIND, "1h", metric, names, start_ns, rolled_end, selection
        )
        for owner, row in zip(owners, rows, strict=True):
            value = row[at + 1]
            if value is not None:
                out[(owner, int(row[0]))] = float(value)  # type: ignore[call-overload,arg-type]
    if rolled_end < end_ns:
        samples = await read_raw(
            client, KIND, rolled_end - CONTEXT_NS, end_ns, devices=selection, metrics=[metric]
        )
        groups = aggregate(
            aggregation,
            samples.series[metric],
            samples.ts_ns[metric],
            samples.values[metric],
            Windows(rolled_end, _HOUR_NS),
        )
        for i in range(len(groups)):
            hour = int(groups.window_start_ns[i])
            value = float(groups.stats[stat][i])
            if rolled_end <= hour < end_ns and not math.isnan(value):
                out[(samples.devices[int(groups.series[i])][1], hour)] = value
    return out


async def group_energy(
    client: InfluxClient, selection: Selection, start_ns: int, end_ns: int
) -> EnergyFigure:
    """The energy figure of the selected lampposts over [start, end) (whole hours, ns)."""
    if start_ns % _HOUR_NS or end_ns % _HOUR_NS:
        raise ValueError("the span must start and end on whole hours")
    if selection.nothing:
        return EnergyFigure(0.0, 0.0, 0, "raw")
    coverage = (await read_coverage(client, KIND, "1h")).get((KIND, "1h"))
    rolled_end = start_ns
    if coverage is not None and coverage.since <= start_ns < coverage.done:
        rolled_end = min(end_ns, coverage.done)
    hours = {
        metric: await _hourly(client, metric, selection, start_ns, end_ns, rolled_end)
        for metric in _NEEDED
    }
    measured = sum(hours["active_energy"].values())
    power, dim, burned = hours["active_power"], hours["dim_level"], hours["operating_hours"]
    keys = sorted(set(power) & set(dim) & set(burned))
    if keys:
        p = np.array([power[k] for k in keys])
        d = np.array([dim[k] for k in keys])
        h = np.array([burned[k] for k in keys])
        lit = d > 0
        full = float(np.sum(p[lit] / d[lit] * 100.0 * h[lit]) / 1000.0)  # W·h to kWh
    else:
        full = 0.0
    reporting = len({device for device, _ in hours["active_energy"]})
    source = "raw" if rolled_end == start_ns else "rollup" if rolled_end >= end_ns else "rollup+raw"
    return EnergyFigure(measured, full, reporting, source)
