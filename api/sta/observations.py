"""Observations from InfluxDB: the readings (or rollup rows) of a set of Datastreams, in time
order, fetched a bounded number of rows at a time; and each Datastream's first and last time.

Streams are grouped by where they are stored (one measurement per device kind and rollup window)
and the devices of a group are named with `timeseries.selection.Selection`, so a query never
grows with an OR per device.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from api.sta.entities import WINDOW_NS, Entity, Stream
from api.sta.instant import Instant, Interval
from timeseries import InfluxClient
from timeseries.schema import (
    RAW_RP,
    quote_ident,
    raw_measurement,
    rollup_measurement,
    rollup_policy,
)
from timeseries.selection import Selection

# One stored value: (time in ns, Datastream id, its stream, result). Plain tuples: a day of
# readings is thousands of them, and most never need to become an Entity.
Row = tuple[int, str, Stream, float]


def observation(stream: Stream, ts_ns: int, value: float) -> Entity:
    """One Observation: a raw reading at an instant, a rollup over its window."""
    if stream.window is None:
        when: Instant | Interval = Instant(ts_ns)
    else:
        when = Interval(Instant(ts_ns), Instant(ts_ns + WINDOW_NS[stream.window]))
    return Entity(
        "Observations",
        f"{stream.id}:{ts_ns}",
        {"phenomenonTime": when, "resultTime": None, "result": value},
        device=stream.device,
        kind=stream.kind,
        metric=stream.metric,
        stream=stream,
        extra={"ts_ns": ts_ns},
    )


@dataclass(frozen=True, slots=True)
class _Source:
    """One InfluxDB measurement and the streams read from it, by device id and field."""

    table: str
    wanted: dict[str, dict[str, Stream]]  # device id -> field -> stream

    @property
    def fields(self) -> list[str]:
        return sorted({f for by_field in self.wanted.values() for f in by_field})

    def conditions(self) -> list[str]:
        return Selection.of_devices(sorted(self.wanted)).conditions()


def _sources(streams: Sequence[Stream]) -> list[_Source]:
    grouped: dict[str, dict[str, dict[str, Stream]]] = defaultdict(lambda: defaultdict(dict))
    for stream in streams:
        if stream.window is None:
            table = f"{quote_ident(RAW_RP)}.{quote_ident(raw_measurement(stream.kind.name))}"
        else:
            table = (
                f"{quote_ident(rollup_policy(stream.window))}."
                f"{quote_ident(rollup_measurement(stream.kind.name, stream.window))}"
            )
        grouped[table][stream.device.device_id][stream.field] = stream
    return [_Source(t, {d: dict(f) for d, f in w.items()}) for t, w in grouped.items()]


@dataclass(frozen=True, slots=True)
class Fetched:
    """Rows in order, and up to where they are complete.

    `horizon` None: every observation of the range is here. Otherwise only those strictly
    before it (ascending) or after it (descending) are sure to be complete.
    """

    rows: list[Row]
    horizon: int | None


async def fetch(
    client: InfluxClient,
    streams: Sequence[Stream],
    start_ns: int,
    end_ns: int,
    *,
    descending: bool,
    rows: int,
) -> Fetched:
    """At most `rows` stored rows per measurement and device group, as Observation rows."""
    sources = _sources(streams)
    order = "DESC" if descending else "ASC"
    statements: list[str] = []
    owners: list[_Source] = []
    for source in sources:
        select = ", ".join(quote_ident(f) for f in source.fields)
        if len(source.wanted) > 1:
            select += ', "device_id"'  # one device: every row is its own, no need to send it
        for where in source.conditions():
            statements.append(
                f"SELECT {select} FROM {source.table} WHERE time >= {int(start_ns)} "
                f"AND time < {int(end_ns)}{where} ORDER BY time {order} LIMIT {int(rows)}"
            )
            owners.append(source)
    found: list[Row] = []
    horizon: int | None = None
    if not statements:
        return Fetched(found, None)
    results = await client.query(statements, packed=True)
    for source, result in zip(owners, results, strict=True):
        count, last = 0, None
        prepared = {
            device: [(f, stream.id, stream) for f, stream in by_field.items()]
            for device, by_field in source.wanted.items()
        }
        only = next(iter(prepared.values())) if len(prepared) == 1 else None
        for series in result:
            at = {name: i for i, name in enumerate(series.columns)}
            device_at = at.get("device_id")
            if device_at is None and only is not None and len(only) == 1:
                # One Datastream (a day of it is thousands of rows): one pass, no lookups.
                field_name, stream_id, stream = only[0]
                if series.values:
                    count += len(series.values)
                    last = int(series.values[-1][0])
                if field_name in at:
                    i = at[field_name]  # times are ints: the client checked every row's
                    found += [
                        (row[0], stream_id, stream, float(row[i]))
                        for row in series.values
                        if row[i] is not None
                    ]
                continue
            for row in series.values:
                count += 1
                ts = int(row[0])
                last = ts
                wanted = only if device_at is None else prepared.get(str(row[device_at]))
                for field_name, stream_id, stream in wanted or ():
                    value = row[at[field_name]] if field_name in at else None
                    if value is not None:
                        found.append((ts, stream_id, stream, float(value)))
        if count >= rows and last is not None:
            horizon = last if horizon is None else (max if descending else min)(horizon, last)
    if len(statements) > 1 or len(streams) > 1:
        # One statement of one stream is already in order: InfluxDB sorted it by time.
        found.sort(key=lambda r: (r[0], r[1]), reverse=descending)
    return Fetched(found, horizon)


def complete(fetched: Fetched, descending: bool) -> list[Row]:
    """The rows that are sure to be complete (see Fetched.horizon)."""
    if fetched.horizon is None:
        return fetched.rows
    edge = fetched.horizon
    if descending:
        return [r for r in fetched.rows if r[0] > edge]
    return [r for r in fetched.rows if r[0] < edge]


def entity_of(row: Row) -> Entity:
    """The Observation entity of a row."""
    return observation(row[2], row[0], row[3])


async def count(client: InfluxClient, streams: Sequence[Stream], start_ns: int, end_ns: int) -> int:
    """How many Observations the streams have in [start, end)."""
    statements: list[str] = []
    owners: list[_Source] = []
    for source in _sources(streams):
        select = ", ".join(f"count({quote_ident(f)}) AS {quote_ident(f)}" for f in source.fields)
        for where in source.conditions():
            statements.append(
                f"SELECT {select} FROM {source.table} WHERE time >= {int(start_ns)} "
                f'AND time < {int(end_ns)}{where} GROUP BY "device_id"'
            )
            owners.append(source)
    if not statements:
        return 0
    total = 0
    for source, result in zip(owners, await client.query(statements), strict=True):
        for series in result:
            wanted = source.wanted.get(series.tags.get("device_id", ""), {})
            for row in series.values:
                for name, value in zip(series.columns, row, strict=True):
                    if name in wanted and value is not None:
                        total += int(value)
    return total


async def time_spans(client: InfluxClient, streams: Sequence[Stream]) -> dict[str, Interval | None]:
    """Each stream's phenomenonTime: from its first observation to the end of its last."""
    statements: list[str] = []
    owners: list[tuple[_Source, str, str]] = []
    for source in _sources(streams):
        for field_name in source.fields:
            for where in source.conditions():
                for selector in ("first", "last"):
                    statements.append(
                        f"SELECT {selector}({quote_ident(field_name)}) FROM {source.table} "
                        f'WHERE time >= 0{where} GROUP BY "device_id"'
                    )
                    owners.append((source, field_name, selector))
    spans: dict[str, list[int]] = {}
    if statements:
        results = await asyncio.gather(
            *(client.query(statements[at : at + 200]) for at in range(0, len(statements), 200))
        )
        flat = [r for answer in results for r in answer]
        for (source, field_name, selector), result in zip(owners, flat, strict=True):
            for series in result:
                stream = source.wanted.get(series.tags.get("device_id", ""), {}).get(field_name)
                if stream is None or not series.values:
                    continue
                ts = int(series.values[0][0])
                span = spans.setdefault(stream.id, [ts, ts])
                span[0 if selector == "first" else 1] = ts
    out: dict[str, Interval | None] = {}
    for stream in streams:
        found = spans.get(stream.id)
        if found is None:
            out[stream.id] = None
            continue
        width = WINDOW_NS[stream.window] if stream.window else 0
        out[stream.id] = Interval(Instant(found[0]), Instant(found[1] + width))
    return out


def _rfc3339(ts: npt.NDArray[np.int64]) -> list[str]:
    """Times in ns as RFC 3339 UTC with `Z`, to the precision the page needs (s, ms, us, ns)."""
    unit = "ns"
    for name, size in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if not (ts % size).any():
            unit = name
            break
    stamps: npt.NDArray[np.datetime64] = ts.astype("datetime64[ns]")
    text = np.datetime_as_string(stamps, unit=unit)  # type: ignore[call-overload]
    return [f"{t}Z" for t in text.tolist()]


def phenomenon_times(rows: Sequence[Row]) -> list[str]:
    """The phenomenonTime of each row as answered: an instant, or a rollup's `start/end`."""
    if not rows:
        return []
    starts = np.array([r[0] for r in rows], dtype=np.int64)
    text = _rfc3339(starts)
    if all(r[2].window is None for r in rows):
        return text  # raw readings: instants
    widths = np.fromiter(
        (WINDOW_NS[r[2].window] if r[2].window else 0 for r in rows),
        dtype=np.int64,
        count=len(rows),
    )
    if widths.any():
        ends = _rfc3339(starts + widths)
        text = [f"{a}/{b}" if w else a for a, b, w in zip(text, ends, widths.tolist(), strict=True)]
    return text
