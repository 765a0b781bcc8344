"""The fleet at a glance, computed on the server: `/v1/summary` and the `summary` event of
`/v1/events`.

Everything comes from the registry's database in one thread hop: device counts by tenant, kind
and status (one aggregate query over the devices and their state), the longest silent devices,
readings and rejections per minute (what the workers count, tenant_minutes), open alerts; and
the devices with the lowest data completeness over the last whole hour, from the few rows the
workers' completeness job writes per hour, read now and then (api.lowest_completeness), never per
summary. A summary is kept for `max_age_s` per set of tenants, so that many dashboards polling
or streaming cost one computation per tenant set every few seconds, not one each (longer for big
fleets, see SummaryCache).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pydantic import Field

from api.etag import weak_etag
from api.lowest_completeness import HourFigures, LowestCompleteness
from api.schemas import Out
from api.status_board import Silent, StatusBoard
from api.timefmt import format_ns, now_ns, to_ns
from devices import NotFound, Registry
from devices.registry import StatusCount

_NS: Final = 1_000_000_000
_MINUTE_NS: Final = 60 * _NS
MINUTES: Final = 60  # the per-minute series covers the last hour
WORST: Final = 10
_REMEMBERED_SETS: Final = 256  # tenant sets whose summary is kept
_REMEMBERED_REGISTRATIONS: Final = 10_000  # never-seen devices whose registration is kept


class StatusCountsOut(Out):
    """Devices of one tenant and kind by status."""

    tenant: str
    kind: str
    total: int
    online: int
    offline: int
    silent: int


class DeviceCountsOut(Out):
    """Active devices by status, in total and per tenant and kind."""

    total: int
    online: int
    offline: int
    silent: int
    by_tenant_kind: list[StatusCountsOut]


class MinuteOut(Out):
    """Readings stored and values rejected in one minute (its start)."""

    minute: str
    readings: int
    rejections: int


class SilentOut(Out):
    """A device without readings: since when, and for how long (seconds)."""

    device_id: str
    tenant: str
    kind: str
    last_seen: str | None = Field(description="its newest reading; null when never seen")
    silent_for_s: int = Field(description="since its newest reading, or its registration")


class CompletenessOut(Out):
    """A device's share of its expected readings that arrived, over the hour of `WorstOut`."""

    device_id: str
    tenant: str
    kind: str
    received: int
    expected: int
    ratio: float = Field(description="received / expected, below 1")


class WorstOut(Out):
    """The devices that most need attention."""

    silence: list[SilentOut]
    completeness: list[CompletenessOut] = Field(
        description=(
            "the devices that lost most of their readings (by `seq`, see /v1/completeness) "
            "over the last whole hour (UTC) that ended at least 5 minutes ago, lowest "
            "completeness first; only devices that lost some (the workers keep the 10 lowest "
            "of each tenant and kind)"
        )
    )
    completeness_start: str | None = Field(
        description="the start of that hour; null while no figures could be read yet"
    )
    completeness_end: str | None = Field(description="its end (exclusive)")


class AlertCountsOut(Out):
    """Open alerts by state."""

    firing: int
    pending: int


class SummaryOut(Out):
    """The fleet of the caller's tenants at a glance."""

    generated_at: str
    devices: DeviceCountsOut
    per_minute: list[MinuteOut]
    worst: WorstOut
    alerts: AlertCountsOut


def compute(
    registry: Registry,
    tenants: Sequence[str] | None,
    now: int,
    completeness: HourFigures | None = None,
    statuses: tuple[list[StatusCount], list[Silent]] | None = None,
    registered: dict[str, int | None] | None = None,
) -> SummaryOut:
    """The summary of the tenants (None: all) at `now` (ns), with the lowest-completeness
    devices of `completeness`; blocking (run it in a thread). `statuses`: the counts by status
    and the longest silent as a status board has them, else they are read from the registry;
    `registered`: when devices were registered (ns) as looked up before, added to here."""
    if statuses is None:
        counts = registry.status_counts(tenants, now)
        silent: list[Silent] = [
            (d.device_id, d.tenant, d.kind, last_ns, _ns_of(d.created_at))
            for d, last_ns in registry.most_silent(tenants, now, WORST)
        ]
    else:
        counts, silent = statuses
        known = {} if registered is None else registered
        if len(known) > _REMEMBERED_REGISTRATIONS:
            known.clear()
        # The board does not keep registrations: looked up for the never seen it lists.
        silent = [
            s if s[3] is not None else (*s[:4], _registered(registry, s[0], known)) for s in silent
        ]
    first = now - now % _MINUTE_NS - (MINUTES - 1) * _MINUTE_NS
    minutes = registry.minute_counts(tenants, first)
    open_alerts = registry.alert_counts(tenants)
    worst = []
    for device_id, tenant, kind, last_ns, created_ns in silent:
        since = last_ns if last_ns is not None else created_ns
        worst.append(
            SilentOut(
                device_id=device_id,
                tenant=tenant,
                kind=kind,
                last_seen=format_ns(last_ns) if last_ns is not None else None,
                silent_for_s=max(0, (now - since) // _NS) if since is not None else 0,
            )
        )
    return SummaryOut(
        generated_at=format_ns(now - now % 1_000_000),
        devices=DeviceCountsOut(
            total=sum(c.total for c in counts),
            online=sum(c.online for c in counts),
            offline=sum(c.offline for c in counts),
            silent=sum(c.silent for c in counts),
            by_tenant_kind=[
                StatusCountsOut(
                    tenant=c.tenant,
                    kind=c.kind,
                    total=c.total,
                    online=c.online,
                    offline=c.offline,
                    silent=c.silent,
                )
                for c in counts
            ],
        ),
        per_minute=[
            MinuteOut(
                minute=format_ns(at),
                readings=minutes.get(at, (0, 0))[0],
                rejections=minutes.get(at, (0, 0))[1],
            )
            for at in range(first, first + MINUTES * _MINUTE_NS, _MINUTE_NS)
        ],
        worst=WorstOut(
            silence=worst,
            completeness=[
                CompletenessOut(
                    device_id=s.device_id,
                    tenant=s.tenant,
                    kind=s.kind,
                    received=s.received,
                    expected=s.expected,
                    ratio=round(s.ratio, 6),
                )
                for s in (completeness.lowest(tenants, WORST) if completeness else [])
            ],
            completeness_start=format_ns(completeness.start_ns) if completeness else None,
            completeness_end=format_ns(completeness.end_ns) if completeness else None,
        ),
        alerts=AlertCountsOut(
            firing=open_alerts.get("firing", 0), pending=open_alerts.get("pending", 0)
        ),
    )


def _ns_of(at: datetime | None) -> int | None:
    return None if at is None else to_ns(at)


def _registered(registry: Registry, device_id: str, known: dict[str, int | None]) -> int | None:
    """When a device was registered (ns; None when it is not found), from `known` (shared by
    the summaries of every tenant set) or else looked up and added to it."""
    if device_id not in known:
        try:
            known[device_id] = _ns_of(registry.device(device_id).created_at)
        except NotFound:
            known[device_id] = None
    return known.get(device_id)


@dataclass(frozen=True, slots=True)
class Summary:
    """A computed summary: its JSON, and a weak ETag of everything but its time."""

    body: bytes
    etag: str
    made: float  # time.monotonic() when computed
    keep_s: float  # how long it is good for


class SummaryCache:
    """Summaries per set of tenants, recomputed when older than `max_age_s` seconds, or than
    `cost_factor` times what computing it took (wall time), whichever is longer.

    Counting a fleet by status is one aggregate query, but over all the tenants' devices: at
    150,000 it takes a good part of a second. The second bound keeps the API's share of a core
    spent on one tenant set's summary at about 1/`cost_factor`, however many dashboards wait.
    """

    def __init__(
        self,
        registry: Registry,
        max_age_s: float = 2.0,
        cost_factor: float = 50.0,
        completeness: LowestCompleteness | None = None,
    ) -> None:
        self._registry = registry
        self._completeness = completeness
        self._max_age_s = max_age_s
        self._cost_factor = cost_factor
        self._kept: OrderedDict[tuple[str, ...] | None, Summary] = OrderedDict()
        self._locks: dict[tuple[str, ...] | None, asyncio.Lock] = {}
        self._registered: dict[str, int | None] = {}  # for compute()
        self.computed = 0  # how many summaries were computed (for tests and benchmarks)

    async def get(self, tenants: Sequence[str] | None, board: StatusBoard | None = None) -> Summary:
        """The summary of the tenants (None: all), at most `max_age_s` old. `board`: the
        tenants' status board (a change feed's), to count by status from once it has been
        read, rather than from the registry."""
        key = None if tenants is None else tuple(sorted(set(tenants)))
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            kept = self._kept.get(key)
            if kept is not None and time.monotonic() - kept.made < kept.keep_s:
                return kept
            figures = await self._completeness.current() if self._completeness else None
            started = time.monotonic()
            now = now_ns()
            statuses = None
            if board is not None and board.ready:  # in this loop: the board is the feed's
                statuses = board.statuses(now, WORST)
            out = await asyncio.to_thread(
                compute, self._registry, key, now, figures, statuses, self._registered
            )
            keep_s = max(self._max_age_s, (time.monotonic() - started) * self._cost_factor)
            self.computed += 1
            body = out.model_dump_json().encode()
            # The tag leaves out what only the clock moves (the time, and seconds of silence,
            # which follow from lastSeen): unchanged devices give an unchanged tag.
            timeless = out.model_copy(
                update={
                    "generated_at": "",
                    "worst": out.worst.model_copy(
                        update={
                            "silence": [
                                s.model_copy(update={"silent_for_s": 0}) for s in out.worst.silence
                            ]
                        }
                    ),
                }
            )
            timeless_body = timeless.model_dump_json().encode()
            summary = Summary(body, weak_etag(timeless_body), time.monotonic(), keep_s)
            self._kept[key] = summary
            self._kept.move_to_end(key)
            while len(self._kept) > _REMEMBERED_SETS:
                dropped, _ = self._kept.popitem(last=False)
                self._locks.pop(dropped, None)
            return summary
