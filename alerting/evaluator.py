"""The evaluator: rounds of rule evaluation and notification, by whichever replica holds the lease.

Every `interval_s` each replica tries to take (or renew) the lease `alerts` in the registry;
the holder evaluates every enabled rule, stores the changes (with the deliveries they owe) in
one transaction, then sends the deliveries that are due. A replica that loses the lease stops
until it gets it back; a crashed holder's lease runs out after `lease_s` and another takes
over, resending at most the deliveries that were in flight (at least once, never twice by two
live replicas at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from alerting.channels.alertmanager import AlertmanagerChannel
from alerting.channels.base import Channel, Notice
from alerting.channels.tenants import TenantChannels, TenantRouting
from alerting.conditions import (
    Memory,
    Round,
    commands,
    lamp,
    quality,
    selected,
    silence,
    threshold,
)
from alerting.lifecycle import Observation, decide
from devices import Device, Registry
from devices.alert_rules import Alert, AlertRule, AlertState, Change, RuleType
from timeseries.client import InfluxClient
from timeseries.errors import InfluxError

log = logging.getLogger(__name__)

LEASE = "alerts"
DELIVERY_BATCH = 200  # deliveries per channel taken at once (the rest next time)
SEND_EVERY_S = 1.0  # how often due notifications are looked for (beside the rounds)


@dataclass(frozen=True, slots=True)
class EvaluatorConfig:
    """How often to evaluate, the lease, and how deliveries are retried (seconds)."""

    holder: str
    interval_s: float = 10.0
    lease_s: float = 30.0
    retry_base_s: float = 5.0  # first retry after this; doubled per attempt
    retry_max_s: float = 600.0
    max_attempts: int = 10  # then the delivery is marked failed
    refresh_s: float = 60.0  # open alerts are pushed to Alertmanager again this often


@dataclass(frozen=True, slots=True)
class RoundReport:
    """What one round did: rules evaluated, alerts changed, deliveries sent, seconds taken."""

    rules: int
    changed: int
    delivered: int
    failed: int
    seconds: float


def _deselected(
    rule: AlertRule, open_alerts: dict[str, Alert], devices: list[Device]
) -> list[Change]:
    """Resolve a threshold's alerts about devices it no longer watches (retired, moved out of
    its box or ids): no reading of theirs would ever resolve them."""
    watched = {d.device_id for d in selected(rule, devices)}
    return [
        Change(
            rule,
            alert.subject,
            alert.device_id,
            AlertState.RESOLVED,
            alert.value,
            alert.summary,
            alert.id,
            "device no longer watched by the rule",
        )
        for subject, alert in open_alerts.items()
        if subject not in watched
    ]


class Evaluator:
    """Evaluates the registry's alert rules and notifies; one per process."""

    def __init__(
        self,
        registry: Registry,
        client: InfluxClient,
        channels: Sequence[Channel],
        config: EvaluatorConfig,
        tenant_channels: TenantChannels | None = None,
    ) -> None:
        self.registry = registry
        self.client = client
        self.channels = list(channels)  # the platform's: every tenant's alerts
        self.config = config
        self.tenant_channels = tenant_channels or TenantChannels()
        self._routing: TenantRouting | None = None
        self._fleet: tuple[tuple[int, int], list[Device]] | None = None
        self._refreshed = 0.0
        self._memory = Memory()
        self._held_until = 0.0  # monotonic time until which this replica acts on its lease

    async def _devices(self) -> list[Device]:
        """The active devices, read again only when the registry changed."""
        revision = await asyncio.to_thread(self.registry.revision)
        if self._fleet is None or self._fleet[0] != revision:
            devices = await asyncio.to_thread(self.registry.devices, include_retired=False)
            self._fleet = (revision, devices)
        return self._fleet[1]

    async def route(self) -> TenantRouting:
        """Read the tenants' enabled channels again (each round: the API changes them)."""
        configured = await asyncio.to_thread(self.registry.channels, enabled_only=True)
        self._routing = self.tenant_channels.routing(configured)
        for manager in self.channels:
            if isinstance(manager, AlertmanagerChannel):
                manager.routing = self._routing.labels
        return self._routing

    async def evaluate(self, now: datetime | None = None) -> tuple[int, int]:
        """One round over every enabled rule; (rules evaluated, alerts changed)."""
        now = now or datetime.now(UTC)
        routing = await self.route()
        rules = await asyncio.to_thread(self.registry.rules, enabled_only=True)
        if not rules:
            return 0, 0
        devices = await self._devices()
        tenants = tuple(sorted({r.tenant for r in rules}))
        self._memory.follow(tenants)
        work = Round(
            self.client,
            now,
            devices,
            tenants=tenants,
            memory=self._memory,
            command_history=self.registry.command_outcomes,
        )
        observed = await asyncio.gather(
            *(self._observe(rule, work) for rule in rules), return_exceptions=True
        )
        open_alerts = await asyncio.to_thread(self.registry.open_alerts, [r.id for r in rules])
        by_rule: dict[str, dict[str, Alert]] = defaultdict(dict)
        for (rule_id, subject), alert in open_alerts.items():
            by_rule[rule_id][subject] = alert
        changes: list[Change] = []
        failed: list[tuple[AlertRule, BaseException]] = []
        for rule, seen in zip(rules, observed, strict=True):
            if isinstance(seen, BaseException):
                # Storage trouble: this rule's alerts stay as they are this round.
                failed.append((rule, seen))
                continue
            open_here = by_rule.get(rule.id, {})
            changes += decide(
                rule,
                seen,
                open_here,
                now,
                absent_resolves=rule.type is not RuleType.THRESHOLD or not rule.active_at(now),
            )
            if rule.type is RuleType.THRESHOLD:
                changes += _deselected(rule, open_here, devices)
        if failed:
            rule, error = failed[0]
            log.warning(
                "%d rule(s) not evaluated this round, e.g. %s (%s): %s",
                len(failed),
                rule.id,
                rule.name,
                error,
            )
        if changes:
            names = [c.name for c in self.channels]
            await asyncio.to_thread(
                self.registry.apply, changes, names, tenant_channels=routing.names, now=now
            )
            for change in changes:
                log.info("alert %s %s: %s", change.subject, change.state.value, change.summary)
        return len(rules), len(changes)

    async def _observe(self, rule: AlertRule, work: Round) -> dict[str, Observation]:
        if rule.type is RuleType.THRESHOLD:
            return await threshold(rule, work)
        if rule.type is RuleType.SILENCE:
            return await silence(rule, work)
        if rule.type is RuleType.LAMP:
            return await lamp(rule, work)
        if rule.type is RuleType.COMMANDS:
            return await commands(rule, work)
        return await quality(rule, work)

    async def deliver(self, now: datetime | None = None) -> tuple[int, int]:
        """Send every due delivery on every channel; (delivered, failed attempts)."""
        now = now or datetime.now(UTC)
        routing = self._routing or await self.route()
        sent = failed = 0
        for channel in [*self.channels, *routing.channels]:
            due = await asyncio.to_thread(
                self.registry.due_deliveries, channel.name, now=now, limit=DELIVERY_BATCH
            )
            if not due:
                continue
            notices = [Notice(d, alert, event, attempts) for d, alert, event, attempts in due]
            outcomes = await channel.send(notices)
            ok = [n.delivery_id for n, why in zip(notices, outcomes, strict=True) if why is None]
            if ok:
                await asyncio.to_thread(self.registry.delivered, ok, now=now)
                sent += len(ok)
            for notice, why in zip(notices, outcomes, strict=True):
                if why is None:
                    continue
                failed += 1
                retry = self._backoff(notice.attempts + 1)
                log.warning(
                    "%s delivery %d of alert %s failed (attempt %d): %s",
                    channel.name,
                    notice.delivery_id,
                    notice.alert.id,
                    notice.attempts + 1,
                    why,
                )
                await asyncio.to_thread(
                    self.registry.delivery_failed,
                    [notice.delivery_id],
                    why,
                    retry_in=retry,
                    now=now,
                )
        return sent, failed

    def _backoff(self, attempts: int) -> timedelta | None:
        """When to try again after `attempts` failures; None: give up."""
        if attempts >= self.config.max_attempts:
            return None
        seconds = min(self.config.retry_base_s * 2 ** (attempts - 1), self.config.retry_max_s)
        return timedelta(seconds=seconds)

    async def refresh(self) -> None:
        """Push every open, fired alert to the Alertmanager channels again (they expire there)."""
        managers = [c for c in self.channels if isinstance(c, AlertmanagerChannel)]
        if not managers:
            return
        open_alerts = await asyncio.to_thread(self.registry.open_alerts)
        fired = [a for a in open_alerts.values() if a.state is not AlertState.PENDING]
        for manager in managers:
            error = await manager.push(fired)
            if error is not None:
                log.warning("refreshing alerts in Alertmanager failed: %s", error)

    async def _hold(self) -> bool:
        """Take or renew the lease; remember until when this replica may act on it."""
        started = time.monotonic()
        held = await asyncio.to_thread(
            self.registry.take_lease,
            LEASE,
            self.config.holder,
            timedelta(seconds=self.config.lease_s),
        )
        # A margin of a fifth: stop sending before another replica may take over.
        self._held_until = started + 0.8 * self.config.lease_s if held else 0.0
        return held

    def _holding(self) -> bool:
        return time.monotonic() < self._held_until

    async def _evaluate_safely(self, now: datetime | None) -> tuple[int, int]:
        try:
            return await self.evaluate(now)
        except InfluxError as exc:
            log.warning("evaluation round failed, storage unavailable: %s", exc)
            return 0, 0

    async def step(self, now: datetime | None = None) -> RoundReport | None:
        """Take the lease and, holding it, run one round and send what is due; None when
        another replica holds it. (`run` sends beside the rounds instead.)"""
        started = time.monotonic()
        if not await self._hold():
            return None
        rules, changed = await self._evaluate_safely(now)
        delivered, failed = await self.deliver(now)
        if time.monotonic() - self._refreshed >= self.config.refresh_s:
            self._refreshed = time.monotonic()
            await self.refresh()
        return RoundReport(rules, changed, delivered, failed, time.monotonic() - started)

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every `interval_s`, and beside them the sending of what is due, until `stop`
        is set; the lease is given up on the way out. A slow or unreachable channel delays
        only its own notifications, never the next round."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._rounds(stop), name="alerts-rounds")
                tasks.create_task(self._sending(stop), name="alerts-sending")
        finally:
            await asyncio.to_thread(self.registry.release_lease, LEASE, self.config.holder)

    async def _rounds(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if await self._hold():
                    rules, changed = await self._evaluate_safely(None)
                    log.debug(
                        "alerts round: %d rule(s), %d change(s), %.2f s",
                        rules,
                        changed,
                        time.monotonic() - started,
                    )
            except (SQLAlchemyError, OSError) as exc:
                # The registry is away: try again next round; the lease (if this replica held
                # it) runs out meanwhile and another replica may take over.
                log.warning("alerts round failed: %s", exc)
                self._held_until = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.interval_s)

    async def _sending(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._holding():
                try:
                    await self.deliver()
                    if time.monotonic() - self._refreshed >= self.config.refresh_s:
                        self._refreshed = time.monotonic()
                        await self.refresh()
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("sending notifications failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SEND_EVERY_S)
