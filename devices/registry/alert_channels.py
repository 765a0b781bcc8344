"""The tenants' own notification channels (`alert_channels`), beside the alerting tables.

A webhook channel gets its signing key here, made from the system's randomness; the key is
stored as it is (signing needs it) and handed out only by `add_channel` and `new_secret`.
Switching a channel off or removing it fails its queued notifications at once, with the reason,
rather than leaving them queued for a channel that no longer sends.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from devices.alert_channels import AlertChannel, ChannelType, channel_problems
from devices.errors import InvalidDevice, NotFound, Problem
from devices.registry.alert_rows import alert_channels, alert_deliveries, tenant_listing
from devices.registry.rows import TenantRow, aware
from devices.registry.store import Store

# Properties a PATCH may change: the owner, the type and the key stay.
CHANNEL_UPDATABLE: Final = frozenset({"name", "url", "recipients", "language", "labels", "enabled"})
SECRET_BYTES: Final = 32


def _spec(channel: AlertChannel) -> str:
    return json.dumps(
        {
            "url": channel.url,
            "recipients": list(channel.recipients),
            "language": channel.language,
            "labels": dict(channel.labels),
        },
        sort_keys=True,
    )


def _channel_of(row: RowMapping) -> AlertChannel:
    spec = json.loads(row["spec"])
    return AlertChannel(
        tenant=row["tenant"],
        name=row["name"],
        type=ChannelType(row["type"]),
        url=spec.get("url"),
        recipients=tuple(spec.get("recipients", ())),
        language=spec.get("language", "nl"),
        labels=tuple(sorted(spec.get("labels", {}).items())),
        enabled=bool(row["enabled"]),
        secret=row["secret"],
        id=row["id"],
        revision=int(row["revision"]),
        created_at=aware(row["created_at"]),
        updated_at=aware(row["updated_at"]),
    )


def _check(channel: AlertChannel, session: Session, *, allow_internal: bool) -> None:
    found = channel_problems(channel, allow_internal=allow_internal)
    if session.get(TenantRow, channel.tenant) is None:
        found.append(Problem("tenant", f"tenant {channel.tenant!r} does not exist"))
    if found:
        raise InvalidDevice.of(found)


def _fail_queued(session: Session, key: str, reason: str, now: datetime) -> None:
    session.execute(
        update(alert_deliveries)
        .where(alert_deliveries.c.channel == key, alert_deliveries.c.state == "pending")
        .values(state="failed", last_error=reason, next_at=None, updated_at=now)
    )


class AlertChannels(Store):
    """The tenants' notification channels."""

    def add_channel(
        self, channel: AlertChannel, *, allow_internal: bool = False, now: datetime | None = None
    ) -> AlertChannel:
        """Store a new channel (InvalidDevice listing every problem); a webhook gets its
        signing key, in the channel returned (and only there, and in `new_secret`)."""
        now = now or datetime.now(UTC)
        key = secrets.token_urlsafe(SECRET_BYTES) if channel.type is ChannelType.WEBHOOK else None
        channel = replace(
            channel, id=str(uuid.uuid4()), secret=key, revision=1, created_at=now, updated_at=now
        )
        with self._session() as session:
            _check(channel, session, allow_internal=allow_internal)
            session.execute(
                insert(alert_channels).values(
                    id=channel.id,
                    tenant=channel.tenant,
                    name=channel.name,
                    type=channel.type.value,
                    spec=_spec(channel),
                    secret=key,
                    enabled=channel.enabled,
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        return channel

    def channel(self, channel_id: str) -> AlertChannel:
        """The channel with this id (NotFound when there is none)."""
        with self._session() as session:
            return _channel_of(self._row(session, channel_id))

    @staticmethod
    def _row(session: Session, channel_id: str, *, lock: bool = False) -> RowMapping:
        query = select(alert_channels).where(alert_channels.c.id == channel_id)
        row = session.execute(query.with_for_update() if lock else query).mappings().one_or_none()
        if row is None:
            raise NotFound("alert channel", channel_id)
        return row

    def channels(
        self, *, tenants: Collection[str] | None = None, enabled_only: bool = False
    ) -> list[AlertChannel]:
        """Channels by tenant and name; only those of `tenants` when given."""
        query = tenant_listing(alert_channels, tenants, enabled_only)
        with self._session() as session:
            return [_channel_of(r) for r in session.execute(query).mappings()]

    def update_channel(
        self,
        channel_id: str,
        changes: Mapping[str, Any],
        *,
        allow_internal: bool = False,
        now: datetime | None = None,
    ) -> AlertChannel:
        """Change some properties of a channel (all re-checked); its revision moves."""
        now = now or datetime.now(UTC)
        bad = sorted(set(changes) - CHANNEL_UPDATABLE)
        if bad:
            raise InvalidDevice.of([Problem(name, f"{name} cannot be changed") for name in bad])
        with self._session() as session:
            channel = replace(_channel_of(self._row(session, channel_id, lock=True)), **changes)
            # An address stored before stays changeable otherwise (switched off, renamed) even
            # where the platform has since stopped allowing internal ones; sending checks again.
            _check(channel, session, allow_internal=allow_internal or "url" not in changes)
            channel = replace(channel, revision=channel.revision + 1, updated_at=now)
            session.execute(
                update(alert_channels)
                .where(alert_channels.c.id == channel_id)
                .values(
                    name=channel.name,
                    spec=_spec(channel),
                    enabled=channel.enabled,
                    revision=channel.revision,
                    updated_at=now,
                )
            )
            if not channel.enabled:
                _fail_queued(session, channel.key, "channel switched off", now)
        return channel

    def new_secret(self, channel_id: str, *, now: datetime | None = None) -> AlertChannel:
        """Replace a webhook channel's signing key; the channel returned carries the new one."""
        now = now or datetime.now(UTC)
        with self._session() as session:
            channel = _channel_of(self._row(session, channel_id, lock=True))
            if channel.type is not ChannelType.WEBHOOK:
                raise InvalidDevice.of([Problem("type", "only a webhook channel has a key")])
            channel = replace(
                channel,
                secret=secrets.token_urlsafe(SECRET_BYTES),
                revision=channel.revision + 1,
                updated_at=now,
            )
            session.execute(
                update(alert_channels)
                .where(alert_channels.c.id == channel_id)
                .values(secret=channel.secret, revision=channel.revision, updated_at=now)
            )
        return channel

    def delete_channel(self, channel_id: str, *, now: datetime | None = None) -> None:
        """Remove a channel; its queued notifications fail (their history stays)."""
        now = now or datetime.now(UTC)
        with self._session() as session:
            channel = _channel_of(self._row(session, channel_id, lock=True))
            session.execute(delete(alert_channels).where(alert_channels.c.id == channel_id))
            _fail_queued(session, channel.key, "channel removed", now)
