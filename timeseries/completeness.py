"""Data completeness from the devices' sequence numbers: readings received / expected.

A device numbers its readings (`seq`). Counting holes in those numbers, from the readings as
stored, shows readings that were lost on the way (a broker dropping queued messages, a network
that ate them), which no other counter can see: the device had its PUBACK, ingest never got
the message.

Definitions (per device, per 1-minute window of reading time):

- An *epoch* is a run of readings between two restarts. The device's readings are taken in
  time order; a restart is where `seq` falls back by more than `reorder` numbers AND lands
  below `reorder` (back to about 0: a reboot, or a counter that wrapped). A smaller fall is a
  reading that arrived out of order (or a duplicate) and stays in its epoch.
- Within an epoch, each distinct `seq` is one reading *received* (duplicates count once),
  attributed to the window of its first occurrence. It is *expected* together with the hole
  below it: the numbers between it and the next lower `seq` of its epoch that are missing.
  A forward jump of more than `max_gap` numbers is taken as a renumbering, not a loss.
- Expected therefore only covers the numbers between the first and the last reading seen: a
  device that goes silent is not "incomplete" here (that is the silent status's job), and the
  lower neighbour is looked for up to `CONTEXT_NS` before the window (a device that sends less
  often than that gets no cross-window holes counted): among all readings of the last
  `NEAR_NS`, before that the device's last reading only.

Storage: measurement `completeness` in the `rollup_1m` retention policy, tags `tenant`,
`device_id`, `kind`; integer fields `received`, `expected`, `missing`; time = window start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from timeseries.client import InfluxClient
from timeseries.lineprotocol import format_field, series_key
from timeseries.schema import (
    COMPLETENESS,
    COMPLETENESS_LOWEST,
    COMPLETENESS_WINDOW,
    RAW_RP,
    quote_ident,
    raw_measurement,
    rollup_policy,
    selection,
)
from timeseries.writer import BatchWriter

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
NS: Final = 1_000_000_000
WIDTH_NS: Final = 60 * NS
# How far before a window the lower neighbour of its first reading is looked for: every reading
# of the last NEAR_NS (so that readings reordered across the window's edge are seen), and
# before that only each device's last one (cheap: one row per device).
CONTEXT_NS: Final = 30 * 60 * NS
NEAR_NS: Final = 2 * 60 * NS
REORDER: Final = 100
MAX_GAP: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Counts:
    """Received and expected readings per (device, window): parallel arrays."""

    device: I64  # index into the caller's device list
    window_start_ns: I64
    received: I64
    expected: I64

    def __len__(self) -> int:
        return len(self.device)

    @property
    def missing(self) -> I64:
        """Expected readings that never arrived, per row."""
        return self.expected - self.received


def count(
    device: I64,
    ts_ns: I64,
    seq: I64,
    start_ns: int,
    end_ns: int,
    width_ns: int = WIDTH_NS,
    *,
    reorder: int = REORDER,
    max_gap: int = MAX_GAP,
) -> Counts:
    """Received and expected readings per device and window in [start, end).

    The arrays hold one stored reading each (several may share a seq: duplicates); readings
    before `start_ns` are context that only supplies lower neighbours.
    """
    device = np.asarray(device, dtype=np.int64)
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    seq = np.asarray(seq, dtype=np.int64)
    if len(device) == 0 or end_ns <= start_ns:
        empty = np.zeros(0, dtype=np.int64)
        return Counts(empty, empty, empty, empty)
    # Time order per device (seq breaks ties, so a batch stamped at one instant stays in order).
    order = np.lexsort((seq, ts_ns, device))
    d, t, s = device[order], ts_ns[order], seq[order]
    first = np.ones(len(d), dtype=bool)
    first[1:] = d[1:] != d[:-1]
    restart = np.zeros(len(d), dtype=bool)
    restart[1:] = (s[1:] < s[:-1] - reorder) & (s[1:] < reorder)
    epoch = np.cumsum(first | restart)
    # Distinct (epoch, seq), each at the time it was first seen.
    order = np.lexsort((t, s, epoch))
    d, t, s, epoch = d[order], t[order], s[order], epoch[order]
    keep = np.ones(len(d), dtype=bool)
    keep[1:] = (epoch[1:] != epoch[:-1]) | (s[1:] != s[:-1])
    d, t, s, epoch = d[keep], t[keep], s[keep], epoch[keep]
    hole = np.zeros(len(d), dtype=np.int64)
    same = epoch[1:] == epoch[:-1]
    hole[1:] = np.where(same, s[1:] - s[:-1] - 1, 0)
    hole[hole > max_gap] = 0
    windows = -(-(end_ns - start_ns) // width_ns)
    inside = (t >= start_ns) & (t < end_ns)
    d, t, hole = d[inside], t[inside], hole[inside]
    slot = d * windows + (t - start_ns) // width_ns
    keys, where = np.unique(slot, return_inverse=True)
    received = np.bincount(where, minlength=len(keys)).astype(np.int64)
    expected = received + np.bincount(where, weights=hole, minlength=len(keys)).astype(np.int64)
    return Counts(
        keys // windows,
        start_ns + (keys % windows) * width_ns,
        received,
        expected,
    )


@dataclass(frozen=True, slots=True)
class SeqSamples:
    """The sequence numbers of one kind's stored readings, column-wise."""

    devices: list[tuple[str, str]]  # (tenant, device_id) per device index
    device: I64
    ts_ns: I64
    seq: I64


async def read_seq(
    client: InfluxClient, kind: str, start_ns: int, end_ns: int, *, last_before_ns: int = 0
) -> SeqSamples:
    """Every stored reading's `seq` of a kind in [start, end), per device.

    With `last_before_ns`, also each device's last reading in [last_before_ns, start).
    """
    devices: list[tuple[str, str]] = []
    at: dict[tuple[str, str], int] = {}
    index: list[int] = []
    times: list[int] = []
    seqs: list[int] = []
    statements = [_seq_query(kind, '"seq"', start_ns, end_ns)]
    if last_before_ns:
        # A selector: the row keeps the time of the reading it picked.
        statements.append(_seq_query(kind, 'last("seq") AS "seq"', last_before_ns, start_ns))
    for result in await client.query("; ".join(statements)):
        for series in result:
            key = (series.tags.get("tenant", ""), series.tags.get("device_id", ""))
            n = at.setdefault(key, len(devices))
            if n == len(devices):
                devices.append(key)
            time_at, seq_at = series.columns.index("time"), series.columns.index("seq")
            for row in series.values:
                if row[seq_at] is not None:
                    index.append(n)
                    times.append(row[time_at])
                    seqs.append(row[seq_at])
    return SeqSamples(
        devices,
        np.asarray(index, dtype=np.int64),
        np.asarray(times, dtype=np.int64),
        np.asarray(seqs, dtype=np.int64),
    )


def _seq_query(kind: str, selected: str, start_ns: int, end_ns: int) -> str:
    return (
        f"SELECT {selected} FROM "  # noqa: S608 - our own expression, identifiers quoted
        f"{quote_ident(RAW_RP)}.{quote_ident(raw_measurement(kind))} "
        f"WHERE time >= {int(start_ns)} AND time < {int(end_ns)} "
        'GROUP BY "tenant", "device_id"'
    )


def completeness_lines(kind: str, samples: SeqSamples, counts: Counts) -> list[str]:
    """Line protocol of the completeness rows (one per device and window with readings)."""
    keys = {
        n: series_key(COMPLETENESS, {"device_id": device_id, "kind": kind, "tenant": tenant})
        for n, (tenant, device_id) in enumerate(samples.devices)
    }
    missing = counts.missing
    return [
        f"{keys[int(counts.device[i])]} received={int(counts.received[i])}i,"
        f"expected={int(counts.expected[i])}i,missing={int(missing[i])}i "
        f"{int(counts.window_start_ns[i])}"
        for i in range(len(counts))
    ]


@dataclass(frozen=True, slots=True)
class TenantTotals:
    """Readings received and expected of one tenant (and kind) over some windows."""

    tenant: str
    kind: str
    received: int
    expected: int


@dataclass(frozen=True, slots=True)
class Counted:
    """What one count of a kind's minutes found: the devices and their rows."""

    kind: str
    devices: list[tuple[str, str]]  # (tenant, device_id) per device index
    counts: Counts

    def totals(self) -> list[TenantTotals]:
        """Received and expected per tenant."""
        return totals_by_tenant(self.kind, self.devices, self.counts)


async def rebuild_completeness(
    client: InfluxClient, writer: BatchWriter, kind: str, start_ns: int, end_ns: int
) -> Counted:
    """Recompute and store the completeness rows of whole minutes in [start, end).

    Returns what was stored (for the worker's /metrics and its hourly lowest devices).
    """
    start_ns -= start_ns % WIDTH_NS
    end_ns -= end_ns % WIDTH_NS
    if end_ns <= start_ns:
        empty = np.zeros(0, dtype=np.int64)
        return Counted(kind, [], Counts(empty, empty, empty, empty))
    samples = await read_seq(
        client, kind, start_ns - NEAR_NS, end_ns, last_before_ns=start_ns - CONTEXT_NS
    )
    counts = count(samples.device, samples.ts_ns, samples.seq, start_ns, end_ns)
    lines = completeness_lines(kind, samples, counts)
    if lines:
        outcome = await writer.write(lines, retention_policy=rollup_policy(COMPLETENESS_WINDOW))
        for _line, why in outcome.refused:
            log.error("InfluxDB refused a completeness row of %s: %s", kind, why)
    return Counted(kind, samples.devices, counts)


def totals_by_tenant(
    kind: str, devices: Sequence[tuple[str, str]], counts: Counts
) -> list[TenantTotals]:
    """Sum received and expected per tenant."""
    tenants: dict[str, tuple[int, int]] = {}
    for i in range(len(counts)):
        tenant = devices[int(counts.device[i])][0]
        got, want = tenants.get(tenant, (0, 0))
        tenants[tenant] = (got + int(counts.received[i]), want + int(counts.expected[i]))
    return [TenantTotals(t, kind, got, want) for t, (got, want) in sorted(tenants.items())]


@dataclass(frozen=True, slots=True)
class Figure:
    """Readings received and expected in one interval (or the whole range) of one group."""

    start_ns: int
    tags: dict[str, str]
    received: int
    expected: int


async def read_figures(
    client: InfluxClient,
    start_ns: int,
    end_ns: int,
    *,
    device_id: str | None = None,
    tenants: Sequence[str] | None = None,
    kind: str | None = None,
    interval_s: int | None = None,
    by: Sequence[str] = (),
) -> list[Figure]:
    """Sums of the stored completeness rows in [start, end), per interval and the tags in `by`.

    Rows are whole minutes: a minute counts when its start lies in the range.
    """
    where = [f"time >= {int(start_ns)}", f"time < {int(end_ns)}"]
    params: dict[str, object] = {}
    if device_id is not None:
        where.append('"device_id" = $device')
        params["device"] = device_id
    if kind is not None:
        where.append('"kind" = $kind')
        params["kind"] = kind
    chosen = selection(None, tenants)
    if chosen is None:
        return []
    among, more = chosen
    params.update(more)
    group = [f"time({int(interval_s)}s)"] if interval_s else []
    group += [quote_ident(tag) for tag in by]
    q = (
        'SELECT sum("received") AS received, sum("expected") AS expected '  # noqa: S608
        f"FROM {quote_ident(rollup_policy(COMPLETENESS_WINDOW))}.{quote_ident(COMPLETENESS)} "
        f"WHERE {' AND '.join(where)}{among}"
        + (f" GROUP BY {', '.join(group)}" if group else "")
        + (" fill(none)" if interval_s else "")
    )
    out: list[Figure] = []
    for series in (await client.query(q, params=params or None))[0]:
        at = {name: n for n, name in enumerate(series.columns)}
        for row in series.values:
            received, expected = row[at["received"]], row[at["expected"]]
            if received is None or expected is None:
                continue
            when = int(row[at["time"]]) if interval_s else start_ns
            out.append(Figure(max(when, start_ns), dict(series.tags), int(received), int(expected)))
    return out


@dataclass(frozen=True, slots=True)
class DeviceShortfall:
    """A device that lost readings over some hour: received and expected in it."""

    tenant: str
    kind: str
    device_id: str
    received: int
    expected: int

    @property
    def ratio(self) -> float:
        """Received / expected (expected is never 0 here: the device lost some)."""
        return self.received / self.expected


def shortfall_rank(shortfall: DeviceShortfall) -> tuple[float, int, str]:
    """Sort key: lowest share first; among equals the one that lost most, then by id."""
    return (shortfall.ratio, shortfall.received - shortfall.expected, shortfall.device_id)


def lowest_lines(hour_start_ns: int, shortfalls: Sequence[DeviceShortfall], keep: int) -> list[str]:
    """Line protocol of an hour's `keep` lowest devices of each tenant and kind.

    Tags `tenant`, `kind` and `rank` (0: the lowest), the device id a field: the measurement
    has at most tenants x kinds x `keep` series, however large the fleet.
    """
    groups: dict[tuple[str, str], list[DeviceShortfall]] = {}
    for shortfall in shortfalls:
        groups.setdefault((shortfall.tenant, shortfall.kind), []).append(shortfall)
    lines = []
    for (tenant, kind), found in sorted(groups.items()):
        for rank, s in enumerate(sorted(found, key=shortfall_rank)[:keep]):
            key = series_key(
                COMPLETENESS_LOWEST, {"kind": kind, "rank": str(rank), "tenant": tenant}
            )
            lines.append(
                f"{key} device_id={format_field(s.device_id)},received={s.received}i,"
                f"expected={s.expected}i {int(hour_start_ns)}"
            )
    return lines


async def read_lowest(client: InfluxClient, start_ns: int, end_ns: int) -> list[DeviceShortfall]:
    """The lowest devices of every tenant and kind stored for the hours starting in [start, end).

    A handful of rows per tenant and kind (see lowest_lines), whatever the size of the fleet.
    """
    q = (
        'SELECT "device_id", "received", "expected", "tenant", "kind" FROM '  # noqa: S608
        f"{quote_ident(rollup_policy('1h'))}.{quote_ident(COMPLETENESS_LOWEST)} "
        f"WHERE time >= {int(start_ns)} AND time < {int(end_ns)}"
    )
    out: list[DeviceShortfall] = []
    for series in (await client.query(q))[0]:
        at = {name: n for n, name in enumerate(series.columns)}
        for row in series.values:
            received, expected = row[at["received"]], row[at["expected"]]
            if received is None or not expected or row[at["device_id"]] is None:
                continue
            out.append(
                DeviceShortfall(
                    str(row[at["tenant"]]),
                    str(row[at["kind"]]),
                    str(row[at["device_id"]]),
                    int(received),
                    int(expected),
                )
            )
    return out
