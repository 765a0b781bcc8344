"""InfluxQL queries over the storage schema: raw readings, the latest reading, device status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from timeseries.client import InfluxClient
from timeseries.schema import RAW_RP, quote_ident

# Columns of a raw reading that are not metrics.
NON_METRIC = frozenset({"time", "tenant", "device_id", "seq", "ts_assigned"})


@dataclass(slots=True)
class RawReading:
    """A reading as stored: time (ns), sequence number, whether we stamped the time, values."""

    ts_ns: int
    seq: int | None = None
    ts_assigned: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


def _source(measurement: str) -> str:
    return f"{quote_ident(RAW_RP)}.{quote_ident(measurement)}"


def _absorb(
    reading: RawReading, columns: list[str], row: list[object], metrics: Sequence[str] | None
) -> None:
    for column, value in zip(columns, row, strict=True):
        if value is None or column in ("time", "tenant", "device_id"):
            continue
        if column == "seq":
            reading.seq = int(value)  # type: ignore[call-overload]
        elif column == "ts_assigned":
            reading.ts_assigned = bool(value)
        elif metrics is None or column in metrics:
            reading.metrics[column] = float(value)  # type: ignore[arg-type]


async def raw_readings(
    client: InfluxClient,
    measurements: Sequence[str],
    device_id: str,
    start_ns: int,
    end_ns: int,
    *,
    limit: int,
    descending: bool = False,
    metrics: Sequence[str] | None = None,
) -> list[RawReading]:
    """Readings of one device in [start, end), merged over its measurements, at most `limit`."""
    order = "DESC" if descending else "ASC"
    select = "*" if not metrics else ", ".join(quote_ident(m) for m in (*metrics, "seq"))
    statements = [
        f"SELECT {select} FROM {_source(m)} WHERE device_id = $device AND time >= {start_ns} "
        f"AND time < {end_ns} ORDER BY time {order} LIMIT {int(limit)}"
        for m in measurements
    ]
    results = await client.query(";".join(statements), params={"device": device_id})
    merged: dict[int, RawReading] = {}
    for result in results:
        for series in result:
            time_at = series.columns.index("time")
            for row in series.values:
                ts = int(row[time_at])
                reading = merged.get(ts)
                if reading is None:
                    reading = merged[ts] = RawReading(ts)
                _absorb(reading, series.columns, row, metrics)
    ordered = sorted(merged.values(), key=lambda r: r.ts_ns, reverse=descending)
    if metrics:
        ordered = [r for r in ordered if r.metrics]
    return ordered[:limit]


async def latest_readings(
    client: InfluxClient, measurements: Sequence[str], since_ns: int
) -> dict[str, RawReading]:
    """The newest reading of every device since `since_ns`, by device id."""
    statements = [
        f"SELECT * FROM {_source(m)} WHERE time >= {since_ns} GROUP BY device_id "
        f"ORDER BY time DESC LIMIT 1"
        for m in measurements
    ]
    out: dict[str, RawReading] = {}
    if not statements:
        return out
    for result in await client.query(";".join(statements)):
        for series in result:
            device_id = series.tags.get("device_id", "")
            for row in series.values:
                ts = int(row[series.columns.index("time")])
                known = out.get(device_id)
                if known is None or known.ts_ns < ts:
                    reading = RawReading(ts)
                    _absorb(reading, series.columns, row, None)
                    if known is not None:  # a device of several kinds: keep every metric
                        reading.metrics = {**known.metrics, **reading.metrics}
                    out[device_id] = reading
                else:
                    _absorb(known, series.columns, row, None)
    return out


async def last_status(client: InfluxClient, since_ns: int) -> dict[str, tuple[int, str]]:
    """The last `status` message (time in ns, state) of every device since `since_ns`."""
    q = (
        f"SELECT last(state) FROM {_source('device_status')} WHERE time >= {since_ns} "
        f"GROUP BY device_id"
    )
    out: dict[str, tuple[int, str]] = {}
    for series in (await client.query(q))[0]:
        for row in series.values:
            out[series.tags.get("device_id", "")] = (int(row[0]), str(row[1]))
    return out
