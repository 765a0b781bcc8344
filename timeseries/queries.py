"""InfluxQL queries over the storage schema: raw readings, the latest reading, device status."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from timeseries.client import InfluxClient, Series
from timeseries.schema import (
    DEVICE_STATUS,
    INGEST_STATS,
    RAW_RP,
    REJECTIONS,
    fleet_rollup_measurement,
    one_of,
    quote_ident,
    rollup_measurement,
    rollup_policy,
)
from timeseries.selection import Selection


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
    # With named metrics, InfluxDB returns only rows holding one of them, so LIMIT counts
    # readings that will be answered (seq is left out: it would match every row).
    select = "*" if not metrics else ", ".join(quote_ident(m) for m in metrics)
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


def _keep_newest(out: dict[str, RawReading], series: Series) -> None:
    device_id = series.tags.get("device_id", "")
    time_at = series.columns.index("time")
    for row in series.values:
        ts = int(row[time_at])
        known = out.get(device_id)
        if known is None or known.ts_ns < ts:
            reading = RawReading(ts)
            _absorb(reading, series.columns, row, None)
            if known is not None:  # a device of several kinds: keep every metric
                reading.metrics = {**known.metrics, **reading.metrics}
            out[device_id] = reading
        else:
            _absorb(known, series.columns, row, None)


async def latest_readings(
    client: InfluxClient,
    measurements: Sequence[str],
    since_ns: int,
    devices: Selection | None = None,
) -> dict[str, RawReading]:
    """The newest reading of every selected device (all when None) since `since_ns`, by id."""
    conditions = (devices or Selection()).conditions()
    out: dict[str, RawReading] = {}
    if not conditions or not measurements:
        return out
    # One request per measurement, at once: InfluxDB runs a request's statements one by one.
    answers = await asyncio.gather(
        *(
            client.query(
                [
                    f"SELECT * FROM {_source(m)} WHERE time >= {int(since_ns)}{where} "
                    "GROUP BY device_id ORDER BY time DESC LIMIT 1"
                    for where in conditions
                ]
            )
            for m in measurements
        )
    )
    for answer in answers:
        for result in answer:
            for series in result:
                _keep_newest(out, series)
    return out


async def last_status(
    client: InfluxClient, since_ns: int, devices: Selection | None = None
) -> dict[str, tuple[int, str]]:
    """The last `status` message (time in ns, state) of every selected device since `since_ns`."""
    conditions = (devices or Selection()).conditions()
    out: dict[str, tuple[int, str]] = {}
    if not conditions:
        return out
    statements = [
        f"SELECT last(state) FROM {_source(DEVICE_STATUS)} WHERE time >= {int(since_ns)}{where} "
        "GROUP BY device_id"
        for where in conditions
    ]
    for result in await client.query(statements):
        for series in result:
            for row in series.values:
                out[series.tags.get("device_id", "")] = (int(row[0]), str(row[1]))
    return out


@dataclass(slots=True)
class StoredRejection:
    """A dead-letter entry as stored."""

    ts_ns: int
    reason: str
    tenant: str
    device_id: str
    topic: str
    metric: str
    detail: str
    excerpt: str
    values: int


async def rejections(
    client: InfluxClient,
    *,
    start_ns: int,
    end_ns: int,
    limit: int,
    tenants: Sequence[str] | None = None,
    device_id: str | None = None,
    reason: str | None = None,
) -> list[StoredRejection]:
    """Rejections in [start, end), newest first, filtered."""
    if tenants is not None and not tenants:
        return []
    where = [f"time >= {int(start_ns)}", f"time < {int(end_ns)}"]
    params: dict[str, object] = {}
    if tenants is not None:
        clause, bound = one_of("tenant", tenants, "t")
        where.append(clause)
        params |= bound
    if device_id is not None:
        params["device"] = device_id
        where.append("device_id = $device")
    if reason is not None:
        params["reason"] = reason
        where.append("reason = $reason")
    q = (
        f"SELECT * FROM {_source(REJECTIONS)} WHERE {' AND '.join(where)} "
        f"ORDER BY time DESC LIMIT {int(limit)}"
    )
    out = []
    for series in (await client.query(q, params=params or None))[0]:
        at = {name: i for i, name in enumerate(series.columns)}
        for row in series.values:
            text = {name: "" if row[i] is None else str(row[i]) for name, i in at.items()}
            out.append(
                StoredRejection(
                    int(text["time"]),
                    text.get("reason", ""),
                    text.get("tenant", ""),
                    text.get("device_id", ""),
                    text.get("topic", ""),
                    text.get("metric", ""),
                    text.get("detail", ""),
                    text.get("excerpt", ""),
                    int(text.get("values") or 1),
                )
            )
    return out


@dataclass(slots=True)
class MinuteActivity:
    """What the platform took in during one minute."""

    minute_ns: int
    values_stored: int = 0
    messages: int = 0
    rejections: dict[str, int] = field(default_factory=dict)


async def activity(
    client: InfluxClient, start_ns: int, end_ns: int, tenants: Sequence[str] | None = None
) -> list[MinuteActivity]:
    """Values stored (all tenants; from the workers' counters) and rejections per reason."""
    if tenants is not None and not tenants:
        return []
    bounds = f"time >= {int(start_ns)} AND time < {int(end_ns)}"
    tenant_filter = ""
    params: dict[str, object] = {}
    if tenants is not None:
        clause, params = one_of("tenant", tenants, "t")
        tenant_filter = f" AND {clause}"
    statements = [
        f'SELECT sum("values"), sum("messages") FROM {_source(INGEST_STATS)} WHERE {bounds} '
        "GROUP BY time(1m) fill(0)",
        f'SELECT sum("values") FROM {_source(REJECTIONS)} WHERE {bounds}{tenant_filter} '
        'GROUP BY time(1m), "reason" fill(none)',
    ]
    stored, rejected = await client.query(statements, params=params or None)
    minutes: dict[int, MinuteActivity] = {}
    for series in stored:
        for t, values, messages in series.values:
            minutes[int(t)] = MinuteActivity(int(t), int(values or 0), int(messages or 0))
    for series in rejected:
        reason = series.tags.get("reason", "")
        for t, count in series.values:
            entry = minutes.setdefault(int(t), MinuteActivity(int(t)))
            entry.rejections[reason] = entry.rejections.get(reason, 0) + int(count or 0)
    return [minutes[t] for t in sorted(minutes)]


async def read_rollups(
    client: InfluxClient,
    kind: str,
    window: str,
    metric: str,
    stats: Sequence[str],
    start_ns: int,
    end_ns: int,
    devices: Selection | None = None,
    *,
    fleet: bool = False,
) -> tuple[list[str], list[list[object]]]:
    """Stored rollup rows of one metric: (device id per row, [time, stat...] per row), by time
    within a device; of the selected devices (all when None).

    With `fleet`, the fleet rollups instead: a tenant per row, of the selected tenants (a
    selection of whole tenants only); one series per tenant, so the query costs the same
    however many devices the tenants have."""
    fields = ", ".join(quote_ident(f"{metric}_{s}") for s in stats)
    if fleet and devices is not None and devices.device_ids is not None:
        raise ValueError("fleet rollups answer for whole tenants, not for devices by id")
    measurement = (fleet_rollup_measurement if fleet else rollup_measurement)(kind, window)
    owner = "tenant" if fleet else "device_id"
    source = f"{quote_ident(rollup_policy(window))}.{quote_ident(measurement)}"
    statements = [
        f"SELECT {fields} FROM {source} WHERE time >= {int(start_ns)} AND time < {int(end_ns)}"
        f"{where} GROUP BY {quote_ident(owner)}"
        for where in (devices or Selection()).conditions()
    ]
    owners: list[str] = []
    rows: list[list[object]] = []
    if not statements:
        return owners, rows
    for result in await client.query(statements):
        for series in result:
            for row in series.values:
                if row[1] is None:  # the count; rows without this metric
                    continue
                owners.append(series.tags.get(owner, ""))
                rows.append(row)
    return owners, rows
