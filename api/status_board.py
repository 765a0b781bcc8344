"""Every device's status for the open dashboards of one tenant set, held in memory by its change
feed (api/routes/events.py) and kept current from the changes the feed reads anyway.

A device's status depends on its registry row (kind, own reporting interval, retired) and on its
state row (newest reading's time, last will), and, for `silent`, on the clock. Deciding it in
SQL for every change read joined each state row to its device (half the cost of a change), and
counting the fleet by status for each `summary` event was one aggregate over every device of
the tenants: about 0.15 s of CPU per summary for 50,000 devices, however few had changed
(bench.latest_scale). The board reads the tenants' devices and states once when the first
dashboard of the set opens; from then on the feed hands it each state row it reads (ids
applied by key), and it follows the registry's changed devices by revision (api.fleet does
the same for the device list). Counting by status is then a few vector operations over
arrays of the set's devices (numpy: about a millisecond for 50,000), as is finding the
longest silent.

The rule is `devices.registry.live_status`, the same as the SQL of /v1/summary without a feed
(tests/api/test_status_board.py compares them device by device). Memory: about 100 bytes per
device of the set (its id, a slot in a dict, six array cells), only while a dashboard of the
set is open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from devices import DEVICE_KINDS, Device, Registry
from devices.registry import (
    SILENT_AFTER_INTERVALS,
    DeviceChanges,
    LiveStatus,
    StateChange,
    StateRecord,
    StatusCount,
    StatusRow,
)

_NS: Final = 1_000_000_000
NEVER: Final = np.iinfo(np.int64).min  # newest reading's time of a device never seen
_DEFAULT_INTERVAL_S: Final = 60.0  # a kind the catalogue does not know (as the SQL rule)
STATUSES: Final[tuple[LiveStatus, ...]] = ("online", "offline", "silent")

# A change as a `devices` event sends it: id, status, newest reading's time, its values (JSON).
Shown = tuple[str, LiveStatus, int | None, str]
# One of the longest silent: id, tenant, kind, newest reading's time, registered (ns; the board
# leaves it None: the summary looks it up for the few never seen it shows).
Silent = tuple[str, str, str, int | None, int | None]


def _silent_after_ns(kind: str, interval_s: float | None) -> int:
    """How long without a reading before a device counts as silent (ns)."""
    known = DEVICE_KINDS.get(kind)
    interval = interval_s or (known.interval_s if known else _DEFAULT_INTERVAL_S)
    return int(SILENT_AFTER_INTERVALS * interval * _NS)


def _is_offline(last_ns: int | None, status: str | None, status_ns: int | None) -> bool:
    """The last will said offline, after the newest reading."""
    return (
        status == "offline" and status_ns is not None and (last_ns is None or status_ns >= last_ns)
    )


class _Table:
    """The set's devices, one slot each (in the order they became known), column-wise."""

    def __init__(self, capacity: int) -> None:
        self.size = 0
        self.ids: list[str] = []
        self.slot: dict[str, int] = {}
        self.groups: list[tuple[str, str]] = []  # (tenant, kind) by group number
        self.group_of: dict[tuple[str, str], int] = {}
        self.last = np.full(capacity, NEVER, np.int64)  # newest reading (ns), NEVER: none
        self.changed = np.zeros(capacity, np.int64)  # the state row's change stamp
        self.after = np.zeros(capacity, np.int64)  # silent after this long without a reading
        self.group = np.zeros(capacity, np.int32)
        self.active = np.zeros(capacity, np.bool_)  # not retired
        self.offline = np.zeros(capacity, np.bool_)

    def _grow(self) -> None:
        for name in ("last", "changed", "after", "group", "active", "offline"):
            old: npt.NDArray[np.generic] = getattr(self, name)
            fill = NEVER if name == "last" else 0
            new = np.full(max(16, 2 * len(old)), fill, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _group(self, tenant: str, kind: str) -> int:
        group = self.group_of.get((tenant, kind))
        if group is None:
            group = self.group_of[(tenant, kind)] = len(self.groups)
            self.groups.append((tenant, kind))
        return group

    def device(self, device: Device) -> None:
        """Add a device that became known, or change one."""
        i = self.slot.get(device.device_id)
        if i is None:
            if self.size == len(self.last):
                self._grow()
            i = self.slot[device.device_id] = self.size
            self.ids.append(device.device_id)
            self.size += 1
        self.group[i] = self._group(device.tenant, device.kind)
        self.after[i] = _silent_after_ns(device.kind, device.interval_s)
        self.active[i] = not device.retired

    @classmethod
    def of(cls, rows: Sequence[StatusRow]) -> _Table:
        """A table of a registry read (Registry.status_rows), filled column by column."""
        size = len(rows)
        table = cls(max(16, size + size // 8))  # room for devices registered later
        table.size = size
        table.ids = [r[0] for r in rows]
        table.slot = {device_id: i for i, device_id in enumerate(table.ids)}
        group = table._group
        table.group[:size] = [group(r[1], r[2]) for r in rows]
        table.after[:size] = [_silent_after_ns(r[2], r[3]) for r in rows]
        table.active[:size] = [not r[4] for r in rows]
        table.last[:size] = [NEVER if r[5] is None else r[5] for r in rows]
        table.offline[:size] = [_is_offline(r[5], r[6], r[7]) for r in rows]
        table.changed[:size] = [r[8] or 0 for r in rows]
        return table


@dataclass(slots=True)
class Noted:
    """What a batch of changes gave: the ids of the devices to show (known, active, wanted),
    in change order; and the changes of devices the board did not know (registered after it
    last followed the registry)."""

    show: list[str]
    unknown: list[StateChange]


class StatusBoard:
    """The status of every device of one tenant set (None: every tenant). Used from one event
    loop; only the registry reads run in threads."""

    def __init__(self, registry: Registry, tenants: tuple[str, ...] | None) -> None:
        self._registry = registry
        self._tenants = tenants
        self._table: _Table | None = None
        self._revision = 0
        self._lock = asyncio.Lock()
        self.loads = 0  # full reads so far (for tests)

    @property
    def ready(self) -> bool:
        """Whether it has been read (and can count)."""
        return self._table is not None

    async def load(self) -> None:
        """Read the set's devices and states, unless done already."""
        async with self._lock:
            if self._table is None:
                await self._read()

    async def _read(self) -> None:
        revision, rows = await asyncio.to_thread(self._registry.status_rows, self._tenants)
        self._table = _Table.of(rows)
        self._revision = revision
        self.loads += 1

    async def follow(self) -> None:
        """Apply the registry's devices changed since the revision last seen (one indexed query,
        usually answering nothing); read everything again when the registry went backwards."""
        async with self._lock:
            if self._table is None:
                await self._read()
                return
            changes: DeviceChanges = await asyncio.to_thread(
                self._registry.device_changes, self._revision
            )
            if changes.complete:  # restored to an earlier revision: start again
                await self._read()
                return
            wanted = None if self._tenants is None else set(self._tenants)
            for device in changes.devices:
                if wanted is None or device.tenant in wanted:
                    self._table.device(device)
            self._revision = changes.revision

    def note(self, rows: Sequence[StateChange], wanted: frozenset[str] | None = None) -> Noted:
        """Take in changes as read from the registry (in change order); the ids of the known
        active devices among them to show: of every one, or only of those `wanted` (the
        devices the feed's streams show).

        Every change is applied, but without a step of Python per row where it can be helped:
        the rows are turned into columns by C loops (zip, map, numpy), and only the ids of the
        devices shown are picked out one by one (a dashboard shows a hundred devices; a big
        city's feed reads tens of thousands of changes a minute)."""
        table = self._table
        assert table is not None, "load() first"
        if not rows:
            return Noted([], [])
        ids, lasts, statuses, status_ns, stamps = zip(*rows, strict=True)
        slots = list(map(table.slot.get, ids))
        if None in slots:  # registered since the board last followed the registry
            unknown = [row for row, i in zip(rows, slots, strict=True) if i is None]
            known = [row for row, i in zip(rows, slots, strict=True) if i is not None]
            return Noted(self.note(known, wanted).show, unknown)
        at = np.array(slots, np.intp)
        newer, _, _ = self._apply(at, lasts, statuses, status_ns, stamps)
        show = table.active[at] & newer
        if wanted is not None:
            hits = wanted.intersection(ids)
            if not hits:
                return Noted([], [])
            show &= np.fromiter((d in hits for d in ids), np.bool_, len(ids))
        return Noted([ids[i] for i in np.flatnonzero(show).tolist()], [])

    def knows(self, device_ids: Iterable[str]) -> bool:
        """Whether every one of these devices is on the board."""
        table = self._table
        assert table is not None, "load() first"
        return all(map(table.slot.__contains__, device_ids))

    def shown(self, records: Sequence[StateRecord], now_ns: int) -> list[Shown]:
        """Take in state rows read with their values (Registry.state_records) and give them as
        a `devices` event shows them, with their status at `now_ns`: those of known active
        devices, in the order given."""
        table = self._table
        assert table is not None, "load() first"
        known = [r for r in records if r[0] in table.slot]
        if not known:
            return []
        ids, lasts, metrics, statuses, status_ns, stamps = zip(*known, strict=True)
        at = np.array([table.slot[i] for i in ids], np.intp)
        _, last, offline = self._apply(at, lasts, statuses, status_ns, stamps)
        silent = last < now_ns - table.after[at]
        code = np.where(offline, 1, np.where(silent, 2, 0)).tolist()
        active = table.active[at].tolist()
        return [
            (ids[n], STATUSES[code[n]], lasts[n], metrics[n]) for n in range(len(ids)) if active[n]
        ]

    def _apply(
        self,
        at: npt.NDArray[np.intp],
        lasts: Sequence[int | None],
        statuses: Sequence[str | None],
        status_ns: Sequence[int | None],
        stamps: Sequence[int],
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Put these states (columns; `at`: their slots) on the board where they are not older
        than what it holds; which ones were, and the states as arrays: the newest reading's
        time (NEVER: none) and whether the last will says offline."""
        table = self._table
        assert table is not None
        count = len(at)
        last = np.array(
            [NEVER if v is None else v for v in lasts] if None in lasts else lasts, np.int64
        )
        offline = np.zeros(count, np.bool_)
        for i in np.flatnonzero(np.array(statuses, object) == "offline").tolist():
            offline[i] = _is_offline(lasts[i], statuses[i], status_ns[i])
        stamp = np.array(stamps, np.int64)
        # Rows read later are never older (they are the rows as committed when read); a row
        # older than what the board holds comes only from a read that began before its load.
        newer: npt.NDArray[np.bool_] = stamp >= table.changed[at]
        table.last[at[newer]] = last[newer]
        table.offline[at[newer]] = offline[newer]
        table.changed[at[newer]] = stamp[newer]
        return newer, last, offline

    def statuses(self, now_ns: int, limit: int) -> tuple[list[StatusCount], list[Silent]]:
        """At `now_ns`: the active devices per tenant and kind by status, in (tenant, kind)
        order, as Registry.status_counts counts them; and the `limit` silent active devices
        longest without a reading (never seen first, then by id), as Registry.most_silent
        finds them."""
        table = self._table
        assert table is not None, "load() first"
        n, groups = table.size, len(table.groups)
        active = table.active[:n]
        group = table.group[:n]
        silent = active & ~table.offline[:n] & (table.last[:n] < now_ns - table.after[:n])
        total = np.bincount(group[active], minlength=groups).tolist()
        off = np.bincount(group[active & table.offline[:n]], minlength=groups).tolist()
        quiet = np.bincount(group[silent], minlength=groups).tolist()
        counts = [
            StatusCount(tenant, kind, total[g], total[g] - off[g] - quiet[g], off[g], quiet[g])
            for g, (tenant, kind) in enumerate(table.groups)
            if total[g]
        ]
        counts.sort(key=lambda c: (c.tenant, c.kind))
        return counts, self._longest_silent(table, np.flatnonzero(silent), limit)

    @staticmethod
    def _longest_silent(table: _Table, found: npt.NDArray[np.intp], limit: int) -> list[Silent]:
        if len(found) > limit:  # those at or below the limit-th oldest reading, ties included
            oldest = table.last[found]
            cut = np.partition(oldest, limit - 1)[limit - 1]
            found = found[oldest <= cut]
        ids = table.ids
        picked = sorted(found.tolist(), key=lambda i: (int(table.last[i]), ids[i]))[:limit]
        out: list[Silent] = []
        for i in picked:
            tenant, kind = table.groups[int(table.group[i])]
            last = int(table.last[i])
            out.append((ids[i], tenant, kind, None if last == NEVER else last, None))
        return out
