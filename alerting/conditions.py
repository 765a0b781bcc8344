"""What each kind of rule observes in one round: thresholds, silence, data quality, lamp faults
and devices refusing commands.

Each function turns stored data into `Observation`s by subject. Reads are shared between
rules in a round (`Round`), so 200 rules over a few metrics cost a few queries, not 200.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerting.lamps import HOUR_NS, lamp_faults, usual_power
from alerting.lifecycle import Observation
from alerting.statistics import MinuteRollups, device_statistics
from devices import DEVICE_KINDS, Device
from devices.alert_rules import AlertRule
from devices.model import BoundingBox
from devices.registry.alerts import CommandOutcomes
from timeseries.client import InfluxClient
from timeseries.queries import last_status, latest_readings
from timeseries.schema import RAW_RP, quote_ident, raw_measurement
from timeseries.selection import Selection

NS = 1_000_000_000
log = logging.getLogger(__name__)
# How far back the latest reading of a device is looked for: a device silent for longer is
# silent "since at least this long" (the read stays a bounded "latest state" query).
LOOKBACK_S = 6 * 3600
# A data-quality rule needs this many rejected messages before a share means anything.
MIN_REJECTED = 5
# Most rejection rows one round reads per statement.
REJECTION_ROWS = 100_000


def _inside(box: BoundingBox, device: Device) -> bool:
    if not box.min_lat <= device.latitude <= box.max_lat:
        return False
    if box.min_lon <= box.max_lon:
        return box.min_lon <= device.longitude <= box.max_lon
    return device.longitude >= box.min_lon or device.longitude <= box.max_lon


def selected(rule: AlertRule, devices: Iterable[Device]) -> list[Device]:
    """The active devices a rule watches: its tenant, kind, box and ids."""
    ids = None if rule.device_ids is None else set(rule.device_ids)
    return [
        d
        for d in devices
        if d.tenant == rule.tenant
        and (rule.kind is None or d.kind == rule.kind or rule.kind in d.extra_kinds)
        and (rule.bbox is None or _inside(rule.bbox, d))
        and (ids is None or d.device_id in ids)
    ]


def _interval_s(device: Device) -> float:
    if device.interval_s is not None:
        return device.interval_s
    return DEVICE_KINDS[device.kind].interval_s


# The latest readings of the previous round are read again this far back, for readings stored
# a little after their timestamp (ingest batches, a worker catching up).
SEEN_OVERLAP_S = 300
# How far back the first round looks for devices' status messages (their last will).
STATUS_LOOKBACK_S = 30 * 86400


@dataclass
class Memory:
    """What the evaluator keeps between rounds, so that each round reads only what is new:
    1-minute rollups by (kind, metric), and each device's latest reading time."""

    rollups: dict[tuple[str, str], MinuteRollups] = field(default_factory=dict)
    last_seen: dict[str, int] = field(default_factory=dict)
    seen_until_ns: int | None = None
    status: dict[str, tuple[int, str]] = field(default_factory=dict)
    status_until_ns: int | None = None
    tenants: tuple[str, ...] = ()
    # Each lamp's usual watts per % dim level (alerting.lamps), the hour it was read for, and
    # the read of a newer hour under way (hour, task).
    usual_power: dict[str, float] = field(default_factory=dict)
    usual_power_hour_ns: int | None = None
    usual_power_reading: tuple[int, asyncio.Task[dict[str, float]]] | None = None

    def follow(self, tenants: tuple[str, ...]) -> None:
        """Start over when the tenants with rules change (the reads select by tenant)."""
        if tenants != self.tenants:
            self.rollups.clear()
            self.last_seen.clear()
            self.seen_until_ns = None
            self.status.clear()
            self.status_until_ns = None
            self.usual_power = {}
            self.usual_power_hour_ns = None
            if self.usual_power_reading is not None:
                self.usual_power_reading[1].cancel()
                self.usual_power_reading = None
            self.tenants = tenants


@dataclass
class Round:
    """One evaluation round: the time, the fleet and the reads shared between rules."""

    client: InfluxClient
    now: datetime
    devices: Sequence[Device]
    _stats: dict[tuple[str, str, str, int], asyncio.Task[dict[str, float]]] = field(
        default_factory=dict
    )
    _seen: asyncio.Task[dict[str, int]] | None = None
    _status: asyncio.Task[dict[str, tuple[int, str]]] | None = None
    _quality: dict[int, asyncio.Task[dict[str, tuple[int, int]]]] = field(default_factory=dict)
    _latest: dict[tuple[str, int], asyncio.Task[dict[str, dict[str, float]]]] = field(
        default_factory=dict
    )
    tenants: tuple[str, ...] = ()
    memory: Memory = field(default_factory=Memory)
    # The registry's command history: (tenants, since) → outcomes per device (Registry's
    # `command_outcomes`); None: no command rule can see anything.
    command_history: Callable[[Sequence[str], datetime], Mapping[str, CommandOutcomes]] | None = (
        None
    )
    _commands: dict[int, asyncio.Task[Mapping[str, CommandOutcomes]]] = field(default_factory=dict)

    @property
    def now_ns(self) -> int:
        """The round's time in ns since the epoch."""
        return int(self.now.timestamp() * NS)

    def statistics(
        self, kind: str, metric: str, statistic: str, window_s: int
    ) -> asyncio.Task[dict[str, float]]:
        """The statistic per device of every tenant with rules (read once per round)."""
        key = (kind, metric, statistic, window_s)
        if key not in self._stats:

            async def read() -> dict[str, float]:
                cache = self.memory.rollups.setdefault((kind, metric), MinuteRollups(kind, metric))
                found = await device_statistics(
                    self.client,
                    kind,
                    metric,
                    statistic,
                    window_s,
                    self.now_ns,
                    Selection.of_tenants(self.tenants),
                    cache,
                )
                return found.values

            self._stats[key] = asyncio.ensure_future(read())
        return self._stats[key]

    async def last_seen(self) -> dict[str, int]:
        """The time (ns) of every device's latest reading within LOOKBACK_S; after the first
        round only the readings since the previous round (and SEEN_OVERLAP_S) are read."""
        if self._seen is None:

            async def read() -> dict[str, int]:
                memory = self.memory
                since = self.now_ns - LOOKBACK_S * NS
                if memory.seen_until_ns is not None:
                    since = max(since, memory.seen_until_ns - SEEN_OVERLAP_S * NS)
                kinds = sorted({raw_measurement(d.kind) for d in self.devices})
                latest = await latest_readings(
                    self.client, kinds, since, Selection.of_tenants(self.tenants)
                )
                for device_id, reading in latest.items():
                    if reading.ts_ns > memory.last_seen.get(device_id, 0):
                        memory.last_seen[device_id] = reading.ts_ns
                memory.seen_until_ns = max(memory.seen_until_ns or 0, self.now_ns)
                return memory.last_seen

            self._seen = asyncio.ensure_future(read())
        return await self._seen

    async def status(self) -> dict[str, tuple[int, str]]:
        """Every device's last status message (its last will says `offline`); after the first
        round only the messages since the previous one are read."""
        if self._status is None:

            async def read() -> dict[str, tuple[int, str]]:
                memory = self.memory
                since = self.now_ns - STATUS_LOOKBACK_S * NS
                if memory.status_until_ns is not None:
                    since = max(since, memory.status_until_ns - SEEN_OVERLAP_S * NS)
                found = await last_status(self.client, since, Selection.of_tenants(self.tenants))
                for device_id, (at, state) in found.items():
                    if at >= memory.status.get(device_id, (0, ""))[0]:
                        memory.status[device_id] = (at, state)
                memory.status_until_ns = max(memory.status_until_ns or 0, self.now_ns)
                return memory.status

            self._status = asyncio.ensure_future(read())
        return await self._status

    async def latest(self, kind: str, window_s: int) -> dict[str, dict[str, float]]:
        """The latest reading's metrics of every device of a kind within the window."""
        key = (kind, window_s)
        if key not in self._latest:

            async def read() -> dict[str, dict[str, float]]:
                found = await latest_readings(
                    self.client,
                    [raw_measurement(kind)],
                    self.now_ns - window_s * NS,
                    Selection.of_tenants(self.tenants),
                )
                return {d: r.metrics for d, r in found.items()}

            self._latest[key] = asyncio.ensure_future(read())
        return await self._latest[key]

    async def usual_power(self) -> dict[str, float]:
        """Each lamp's usual watts per % dim level. The first round waits for it (a lamp is
        judged alike in every round, so an alert open from before a restart does not resolve
        for want of it); then it is read again once an hour in the background, the rounds
        meanwhile using the previous hour's (at 10,000 lamps the read takes tens of seconds:
        bench/results/alerts.md)."""
        memory = self.memory
        hour = self.now_ns - self.now_ns % HOUR_NS
        if memory.usual_power_hour_ns != hour and memory.usual_power_reading is None:
            read = usual_power(self.client, Selection.of_tenants(self.tenants), hour)
            memory.usual_power_reading = (hour, asyncio.ensure_future(read))
        reading = memory.usual_power_reading
        if reading is None:
            return memory.usual_power
        hour_read, task = reading
        if memory.usual_power_hour_ns is None:
            await asyncio.wait([task])
        if not task.done():
            return memory.usual_power
        error = RuntimeError("read cancelled") if task.cancelled() else task.exception()
        if memory.usual_power_reading is reading:  # the first rule of the round to see it
            memory.usual_power_reading = None
            if error is None:
                memory.usual_power = task.result()
                memory.usual_power_hour_ns = hour_read
            elif memory.usual_power_hour_ns is not None:
                log.warning("lamps' usual power not read again (tried next round): %s", error)
        if memory.usual_power_hour_ns is None and error is not None:
            raise error
        return memory.usual_power

    async def command_outcomes(self, window_s: int) -> Mapping[str, CommandOutcomes]:
        """How each device of the tenants with rules answered its commands of the window."""
        if self.command_history is None:
            return {}
        if window_s not in self._commands:
            self._commands[window_s] = asyncio.ensure_future(
                asyncio.to_thread(
                    self.command_history, self.tenants, self.now - timedelta(seconds=window_s)
                )
            )
        return await self._commands[window_s]

    async def quality(self, window_s: int) -> dict[str, tuple[int, int]]:
        """(rejected, accepted) messages per device over the window."""
        if window_s not in self._quality:
            self._quality[window_s] = asyncio.ensure_future(self._read_quality(window_s))
        return await self._quality[window_s]

    async def _read_quality(self, window_s: int) -> dict[str, tuple[int, int]]:
        since = self.now_ns - window_s * NS
        where = Selection.of_tenants(self.tenants).conditions()
        if not where:
            return {}
        kinds = sorted({raw_measurement(d.kind) for d in self.devices})
        # A rejection's device id is a field (a tag would grow without bound with garbage
        # ids), so rejections come back as rows, capped; accepted messages are counted by
        # InfluxDB, one row per device.
        statements = [
            f'SELECT "device_id" FROM {quote_ident(RAW_RP)}."rejection" '  # noqa: S608
            f"WHERE time >= {since}{w} LIMIT {REJECTION_ROWS}"
            for w in where
        ] + [
            f'SELECT count("seq") FROM {quote_ident(RAW_RP)}.{quote_ident(k)} '  # noqa: S608
            f'WHERE time >= {since}{w} GROUP BY "device_id"'
            for k in kinds
            for w in where
        ]
        results = await self.client.query(statements)
        rejected: dict[str, int] = defaultdict(int)
        accepted: dict[str, int] = defaultdict(int)
        for number, result in enumerate(results):
            for series in result:
                if number < len(where):
                    at = series.columns.index("device_id")
                    for row in series.values:
                        if row[at]:
                            rejected[str(row[at])] += 1
                else:
                    for row in series.values:
                        accepted[series.tags.get("device_id", "")] += int(row[1] or 0)
        return {d: (rejected[d], accepted.get(d, 0)) for d in rejected}


async def threshold(rule: AlertRule, work: Round) -> dict[str, Observation]:
    """The rule's statistic per selected device, against its thresholds."""
    if rule.kind is None or rule.metric is None or rule.statistic is None:
        raise ValueError(f"threshold rule {rule.id} lacks a kind, metric or statistic")
    if not rule.active_at(work.now):
        return {}
    values = await work.statistics(rule.kind, rule.metric, rule.statistic, rule.window_s)
    unit = DEVICE_KINDS[rule.kind].metric(rule.metric).unit  # type: ignore[union-attr]
    out: dict[str, Observation] = {}
    for device in selected(rule, work.devices):
        value = values.get(device.device_id)
        if value is None or not math.isfinite(value):
            continue
        out[device.device_id] = Observation(
            device.device_id,
            device.device_id,
            value,
            rule.fires(value),
            rule.resolves(value),
            f"{rule.metric} {rule.statistic} over {rule.window} is {value:.4g} {unit} "
            f"(fires {rule.direction.value} {rule.fire_at:g}, "
            f"resolves at {rule.resolve_threshold:g})",
        )
    return out


async def silence(rule: AlertRule, work: Round) -> dict[str, Observation]:
    """Silent devices; a tenant or kind mostly silent at once is one group observation."""
    devices = selected(rule, work.devices)
    seen, status = await asyncio.gather(work.last_seen(), work.status())
    now_ns = work.now_ns
    silent: dict[str, float] = {}  # device id -> seconds silent (inf: never seen in lookback)
    for device in devices:
        last = seen.get(device.device_id)
        state = status.get(device.device_id)
        if state is not None and state[1] == "offline" and (last is None or state[0] >= last):
            silent[device.device_id] = (now_ns - state[0]) / NS
            continue
        since = last
        if since is None:
            created = device.created_at
            if created is not None and (now_ns - created.timestamp() * NS) < LOOKBACK_S * NS:
                since = int(created.timestamp() * NS)
            else:
                since = now_ns - LOOKBACK_S * NS
        quiet_s = (now_ns - since) / NS
        if quiet_s > rule.factor * _interval_s(device):
            silent[device.device_id] = quiet_s
    out: dict[str, Observation] = {}
    grouped: set[str] = set()
    groups: list[tuple[str, str, list[Device]]] = [
        (f"tenant:{rule.tenant}", rule.tenant, list(devices))
    ]
    kinds: dict[str, list[Device]] = defaultdict(list)
    for device in devices:
        kinds[device.kind].append(device)
    groups += [
        (f"kind:{rule.tenant}/{kind}", f"{rule.tenant} {kind}", members)
        for kind, members in sorted(kinds.items())
    ]
    for subject, label, members in groups:
        quiet = [
            d.device_id for d in members if d.device_id in silent and d.device_id not in grouped
        ]
        if len(quiet) >= rule.group_minimum and len(quiet) >= rule.group_share * len(members):
            grouped.update(quiet)
            out[subject] = Observation(
                subject,
                None,
                float(len(quiet)),
                True,
                False,
                f"{len(quiet)} of {len(members)} devices of {label} are silent",
            )
    for device_id, quiet_s in silent.items():
        held = device_id in grouped
        out[device_id] = Observation(
            device_id,
            device_id,
            quiet_s,
            not held,
            False,
            "offline (last will)"
            if status.get(device_id, (0, ""))[1] == "offline"
            else f"no reading for {quiet_s:.0f} s",
        )
    return out


async def quality(rule: AlertRule, work: Round) -> dict[str, Observation]:
    """Devices whose rejected messages exceed the rule's share over its window."""
    counts = await work.quality(rule.window_s)
    out: dict[str, Observation] = {}
    for device in selected(rule, work.devices):
        rejected, accepted = counts.get(device.device_id, (0, 0))
        total = rejected + accepted
        if rejected < MIN_REJECTED or total == 0:
            continue
        share = rejected / total
        if share > rule.max_share:
            out[device.device_id] = Observation(
                device.device_id,
                device.device_id,
                share,
                True,
                False,
                f"{rejected} of {total} messages rejected over {rule.window} "
                f"({share:.0%}, tolerated {rule.max_share:.0%})",
            )
    return out


async def lamp(rule: AlertRule, work: Round) -> dict[str, Observation]:
    """Lamp faults of the rule's lamps, from their latest readings and the sun."""
    latest, usual = await asyncio.gather(work.latest("lamppost", rule.window_s), work.usual_power())
    lamps = [
        (d.device_id, d.latitude, d.longitude, latest[d.device_id])
        for d in selected(rule, work.devices)
        if d.device_id in latest
    ]
    return lamp_faults(rule, work.now, lamps, usual)


async def commands(rule: AlertRule, work: Round) -> dict[str, Observation]:
    """Devices that keep refusing commands: `max_failures` or more of the window's commands
    refused, failed or unanswered, and none obeyed since the latest of those."""
    outcomes = await work.command_outcomes(rule.window_s)
    out: dict[str, Observation] = {}
    for device in selected(rule, work.devices):
        seen = outcomes.get(device.device_id)
        if seen is None or seen.unobeyed < rule.max_failures:
            continue
        last_bad, last_good = seen.last_unobeyed_at, seen.last_obeyed_at
        if last_good is not None and (last_bad is None or last_good > last_bad):
            continue  # it obeys again
        told = ", ".join(
            f"{seen.counts[s]} {s}" for s in ("refused", "failed", "expired") if seen.counts.get(s)
        )
        total = sum(seen.counts.values())
        out[device.device_id] = Observation(
            device.device_id,
            device.device_id,
            float(seen.unobeyed),
            True,
            False,
            f"{seen.unobeyed} of {total} commands in the last {rule.window} not obeyed ({told})",
        )
    return out
