"""Commands and their audit trail in the registry's database (SQLite or PostgreSQL).

A command goes created → sent (the broker's PUBACK) → done / refused / failed (the device's
answer), or expired when no answer came by its deadline. Every change is one row of
`command_events`, with its time; the command row keeps the current state for quick queries.
Each change is a conditional UPDATE (`... WHERE state IN (earlier states)`), so applying the
same acknowledgement twice, or two replicas expiring the same command, changes nothing the
second time: that is what makes redelivered MQTT messages harmless.

The tables are created by the registry's Alembic migration r0003 and declared here on the
registry's own metadata (`devices.registry.rows.Base`), as Core tables: the queries below are
set-based (conditional UPDATEs with RETURNING), which rows would not make simpler.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection, RowMapping

from devices.errors import NotFound
from devices.registry.rows import Base, aware, stored_utc
from devices.registry.store import Database

log = logging.getLogger(__name__)

_CHUNK: Final = 500  # ids per IN (...) list; far below every driver's parameter limit


class CommandState(StrEnum):
    """Where a command is in its life."""

    CREATED = "created"  # stored, not yet accepted by the broker
    SENT = "sent"  # the broker acknowledged it (PUBACK)
    DONE = "done"  # the device carried it out
    REFUSED = "refused"  # the device would not
    FAILED = "failed"  # the device tried and failed
    EXPIRED = "expired"  # no answer by the deadline

    @property
    def final(self) -> bool:
        """Whether nothing can change this state any more."""
        return self not in (CommandState.CREATED, CommandState.SENT)


OPEN_STATES: Final = (CommandState.CREATED.value, CommandState.SENT.value)

# The registry's own metadata: its schema test compares these tables with the migrations.
metadata = Base.metadata

commands = Table(
    "commands",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("group_id", String(36), nullable=True),
    Column("tenant", String(32), nullable=False),
    # Devices are never deleted (only retired), so a command's device always exists.
    Column("device_id", String(63), ForeignKey("devices.device_id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("args", Text, nullable=False),  # JSON object
    Column("state", String(16), nullable=False),
    Column("detail", Text, nullable=True),
    Column("issued_by", String(64), nullable=True),  # the API key's id
    Column("issued_role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # The outbox lease: which command service publishes it, until when (see `claim_unsent`).
    Column("claimed_by", String(100), nullable=True),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Index("ix_commands_group_state", "group_id", "state"),
    Index("ix_commands_device_created", "device_id", "created_at"),
    Index("ix_commands_tenant_created", "tenant", "created_at"),
    Index("ix_commands_created", "created_at", "id"),
    # The outbox and the expiry sweep look for open commands by deadline.
    Index("ix_commands_state_expires", "state", "expires_at"),
)

command_events = Table(
    "command_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "command_id",
        String(36),
        ForeignKey("commands.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("state", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_command_events_command_id", "command_id"),
)

command_groups = Table(
    "command_groups",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenants", Text, nullable=False),  # JSON list of the tenants its devices belong to
    Column("selector", Text, nullable=False),  # JSON object, as asked
    Column("name", String(64), nullable=False),
    Column("args", Text, nullable=False),
    Column("issued_by", String(64), nullable=True),
    Column("issued_role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("device_count", Integer, nullable=False),
    Index("ix_command_groups_created_at", "created_at"),
)


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who gave a command: the API key's id (None: the platform itself) and its role."""

    key_id: str | None
    role: str


@dataclass(frozen=True, slots=True)
class NewCommand:
    """A command to store: for one device, with its deadline."""

    tenant: str
    device_id: str
    name: str
    args: Mapping[str, Any]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CommandEvent:
    """One change of a command's state, with its time (UTC)."""

    state: str
    at: datetime
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A stored command with its current state; `events` only when asked for."""

    id: str
    group_id: str | None
    tenant: str
    device_id: str
    name: str
    args: dict[str, Any]
    state: CommandState
    detail: str | None
    issuer: Issuer
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    events: tuple[CommandEvent, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class CommandGroup:
    """A group command: one command per selected device, and how far they got."""

    id: str
    tenants: tuple[str, ...]
    selector: dict[str, Any]
    name: str
    args: dict[str, Any]
    issuer: Issuer
    created_at: datetime
    expires_at: datetime
    device_count: int
    progress: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """A device's answer as it arrived: on whose ack topic, for which command id, what status."""

    tenant: str
    device_id: str
    command_id: str
    status: str  # done, refused or failed
    detail: str | None = None


class AckOutcome(StrEnum):
    """What an acknowledgement did."""

    APPLIED = "applied"  # the command took the device's answer
    DUPLICATE = "duplicate"  # the command already had a final state (a redelivery, say)
    LATE = "late"  # the command had expired; the answer is kept in its events only
    FOREIGN = "foreign"  # the id is another device's command: refused
    UNKNOWN = "unknown"  # no command has this id


def _command(row: RowMapping, events: Sequence[CommandEvent] = ()) -> Command:
    return Command(
        id=row["id"],
        group_id=row["group_id"],
        tenant=row["tenant"],
        device_id=row["device_id"],
        name=row["name"],
        args=json.loads(row["args"]),
        state=CommandState(row["state"]),
        detail=row["detail"],
        issuer=Issuer(row["issued_by"], row["issued_role"]),
        created_at=stored_utc(row["created_at"]),
        expires_at=stored_utc(row["expires_at"]),
        sent_at=aware(row["sent_at"]),
        finished_at=aware(row["finished_at"]),
        events=tuple(events),
    )


def _group(row: RowMapping, progress: dict[str, int]) -> CommandGroup:
    return CommandGroup(
        id=row["id"],
        tenants=tuple(json.loads(row["tenants"])),
        selector=json.loads(row["selector"]),
        name=row["name"],
        args=json.loads(row["args"]),
        issuer=Issuer(row["issued_by"], row["issued_role"]),
        created_at=stored_utc(row["created_at"]),
        expires_at=stored_utc(row["expires_at"]),
        device_count=int(row["device_count"]),
        progress=progress,
    )


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Commands newest first and the key of the last one, for the next page."""

    items: list[Command]
    after: tuple[datetime, str] | None


class CommandStore(Database):
    """Commands, groups and the audit trail; use as a context manager.

    `open()` migrates the registry's schema (these tables included).
    """

    # -- creating ----------------------------------------------------------------------------

    def create(
        self,
        new: Sequence[NewCommand],
        issuer: Issuer,
        *,
        group_selector: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> tuple[list[Command], CommandGroup | None]:
        """Store commands (state created) and, with `group_selector`, the group they form."""
        now = now or datetime.now(UTC)
        group: CommandGroup | None = None
        group_id = None
        rows = []
        events = []
        for item in new:
            command_id = str(uuid.uuid4())
            rows.append(
                {
                    "id": command_id,
                    "tenant": item.tenant,
                    "device_id": item.device_id,
                    "name": item.name,
                    "args": json.dumps(dict(item.args), sort_keys=True),
                    "state": CommandState.CREATED.value,
                    "detail": None,
                    "issued_by": issuer.key_id,
                    "issued_role": issuer.role,
                    "created_at": now,
                    "expires_at": item.expires_at,
                    "sent_at": None,
                    "finished_at": None,
                }
            )
            events.append(
                {"command_id": command_id, "state": CommandState.CREATED.value, "at": now}
            )
        with self._begin() as conn:
            if group_selector is not None:
                if not new:
                    raise ValueError("a group needs at least one command")
                group_id = str(uuid.uuid4())
                first = new[0]
                tenants = sorted({c.tenant for c in new})
                conn.execute(
                    insert(command_groups).values(
                        id=group_id,
                        tenants=json.dumps(tenants),
                        selector=json.dumps(dict(group_selector), sort_keys=True),
                        name=first.name,
                        args=json.dumps(dict(first.args), sort_keys=True),
                        issued_by=issuer.key_id,
                        issued_role=issuer.role,
                        created_at=now,
                        expires_at=max(c.expires_at for c in new),
                        device_count=len(new),
                    )
                )
                for row in rows:
                    row["group_id"] = group_id
                group = CommandGroup(
                    group_id,
                    tuple(tenants),
                    dict(group_selector),
                    first.name,
                    dict(first.args),
                    issuer,
                    now,
                    max(c.expires_at for c in new),
                    len(new),
                    {CommandState.CREATED.value: len(new)},
                )
            else:
                for row in rows:
                    row["group_id"] = None
            if rows:
                conn.execute(insert(commands), rows)
                conn.execute(insert(command_events), events)
        created = [
            Command(
                id=str(row["id"]),
                group_id=group_id,
                tenant=item.tenant,
                device_id=item.device_id,
                name=item.name,
                args=dict(item.args),
                state=CommandState.CREATED,
                detail=None,
                issuer=issuer,
                created_at=now,
                expires_at=item.expires_at,
                sent_at=None,
                finished_at=None,
                events=(CommandEvent(CommandState.CREATED.value, now),),
            )
            for row, item in zip(rows, new, strict=True)
        ]
        return created, group

    # -- the outbox ----------------------------------------------------------------------------

    def claim_unsent(
        self, owner: str, *, limit: int, lease_s: float, now: datetime | None = None
    ) -> list[Command]:
        """Take up to `limit` created, unexpired commands no other publisher holds, for `lease_s`.

        Two replicas may claim at once: the UPDATE re-checks the lease on each row it locks
        (PostgreSQL) or runs alone (SQLite), so each command goes to one of them. A publisher
        that dies leaves its lease to run out; the command is then claimed again (and may reach
        the device twice: devices answer a repeated id again, changing nothing).
        """
        now = now or datetime.now(UTC)
        free = or_(commands.c.claimed_until.is_(None), commands.c.claimed_until < now)
        with self._begin() as conn:
            candidates = list(
                conn.scalars(
                    select(commands.c.id)
                    .where(
                        commands.c.state == CommandState.CREATED.value,
                        commands.c.expires_at > now,
                        free,
                    )
                    .order_by(commands.c.created_at, commands.c.id)
                    .limit(limit)
                )
            )
            if not candidates:
                return []
            claimed = list(
                conn.execute(
                    update(commands)
                    .where(
                        commands.c.id.in_(candidates),
                        commands.c.state == CommandState.CREATED.value,
                        free,
                    )
                    .values(claimed_by=owner, claimed_until=now + timedelta(seconds=lease_s))
                    .returning(*commands.c)
                ).mappings()
            )
        return sorted((_command(r) for r in claimed), key=lambda c: (c.created_at, c.id))

    def release(self, ids: Sequence[str]) -> None:
        """Give back the lease of commands that could not be published (the broker is away)."""
        with self._begin() as conn:
            for chunk in _chunks(ids):
                conn.execute(
                    update(commands)
                    .where(commands.c.id.in_(chunk))
                    .values(claimed_by=None, claimed_until=None)
                )

    def mark_sent(self, ids: Sequence[str], now: datetime | None = None) -> int:
        """Record the broker's PUBACK for these commands; returns how many moved to sent.

        A device may answer before our PUBACK is recorded: such a command is already final and
        stays so (its `sent` event is still recorded, it did happen).
        """
        now = now or datetime.now(UTC)
        moved = 0
        with self._begin() as conn:
            for chunk in _chunks(ids):
                changed = list(
                    conn.scalars(
                        update(commands)
                        .where(
                            commands.c.id.in_(chunk),
                            commands.c.state == CommandState.CREATED.value,
                        )
                        .values(state=CommandState.SENT.value, sent_at=now)
                        .returning(commands.c.id)
                    )
                )
                already = set(
                    conn.scalars(
                        select(commands.c.id).where(
                            commands.c.id.in_(chunk),
                            commands.c.sent_at.is_(None),
                            commands.c.state.not_in(OPEN_STATES),
                        )
                    )
                )
                if already:
                    conn.execute(
                        update(commands).where(commands.c.id.in_(already)).values(sent_at=now)
                    )
                recorded = [*changed, *already]
                if recorded:
                    conn.execute(
                        insert(command_events),
                        [
                            {"command_id": i, "state": CommandState.SENT.value, "at": now}
                            for i in recorded
                        ],
                    )
                moved += len(changed)
        return moved

    def fail_unsent(self, reasons: Mapping[str, str], now: datetime | None = None) -> int:
        """Mark failed the created commands the broker refused to take, each with its reason."""
        now = now or datetime.now(UTC)
        failed = 0
        with self._begin() as conn:
            for command_id, reason in reasons.items():
                if conn.execute(
                    update(commands)
                    .where(
                        commands.c.id == command_id,
                        commands.c.state == CommandState.CREATED.value,
                    )
                    .values(
                        state=CommandState.FAILED.value,
                        detail=reason,
                        finished_at=now,
                        claimed_by=None,
                        claimed_until=None,
                    )
                ).rowcount:
                    conn.execute(
                        insert(command_events).values(
                            command_id=command_id,
                            state=CommandState.FAILED.value,
                            at=now,
                            detail=reason,
                        )
                    )
                    failed += 1
        return failed

    # -- answers and deadlines -----------------------------------------------------------------

    def record_ack(
        self,
        tenant: str,
        device_id: str,
        command_id: str,
        status: str,
        detail: str | None,
        now: datetime | None = None,
    ) -> AckOutcome:
        """Apply one device's answer (see `record_answers`)."""
        (outcome,) = self.record_answers(
            [Answer(tenant, device_id, command_id, status, detail)], now
        )
        return outcome

    def record_answers(
        self, answers: Sequence[Answer], now: datetime | None = None
    ) -> list[AckOutcome]:
        """Apply devices' answers in one transaction, each from its device's own ack topic.

        Idempotent: a second copy finds the command final and changes nothing. An id that is
        another device's command is refused (FOREIGN) and leaves that command untouched.
        """
        now = now or datetime.now(UTC)
        for answer in answers:
            final = CommandState(answer.status)
            if not final.final or final is CommandState.EXPIRED:
                raise ValueError(f"{answer.status!r} is not a device's answer")
        outcomes: dict[int, AckOutcome] = {}
        with self._begin() as conn:
            # One conditional UPDATE per distinct (status, detail), matching id, device and
            # tenant together: an answer on the wrong device's topic matches nothing.
            applied: set[str] = set()
            by_result: dict[tuple[str, str | None], list[int]] = {}
            for index, answer in enumerate(answers):
                by_result.setdefault((answer.status, answer.detail), []).append(index)
            for (status, detail), indexes in by_result.items():
                keys = [
                    (answers[i].command_id, answers[i].device_id, answers[i].tenant)
                    for i in indexes
                ]
                changed: set[str] = set()
                for start in range(0, len(keys), _CHUNK // 3):
                    changed.update(
                        conn.scalars(
                            update(commands)
                            .where(
                                tuple_(commands.c.id, commands.c.device_id, commands.c.tenant).in_(
                                    keys[start : start + _CHUNK // 3]
                                ),
                                commands.c.state.in_(OPEN_STATES),
                            )
                            .values(state=status, detail=detail, finished_at=now)
                            .returning(commands.c.id)
                        )
                    )
                if changed:
                    conn.execute(
                        insert(command_events),
                        [
                            {"command_id": i, "state": status, "at": now, "detail": detail}
                            for i in sorted(changed)
                        ],
                    )
                for i in indexes:
                    command_id = answers[i].command_id
                    if command_id in changed and command_id not in applied:
                        applied.add(command_id)
                        outcomes[i] = AckOutcome.APPLIED
            rest = [i for i in range(len(answers)) if i not in outcomes]
            if rest:
                self._classify(conn, answers, rest, outcomes, now)
        return [outcomes[i] for i in range(len(answers))]

    @staticmethod
    def _classify(
        conn: Connection,
        answers: Sequence[Answer],
        indexes: Sequence[int],
        outcomes: dict[int, AckOutcome],
        now: datetime,
    ) -> None:
        """Why the answers at `indexes` changed nothing; a late answer is kept as an event."""
        ids = sorted({answers[i].command_id for i in indexes})
        found: dict[str, RowMapping] = {}
        for chunk in _chunks(ids):
            for stored in conn.execute(
                select(
                    commands.c.id, commands.c.device_id, commands.c.tenant, commands.c.state
                ).where(commands.c.id.in_(chunk))
            ).mappings():
                found[stored["id"]] = stored
        late_events = []
        for i in indexes:
            answer = answers[i]
            row = found.get(answer.command_id)
            if row is None:
                outcomes[i] = AckOutcome.UNKNOWN
            elif row["device_id"] != answer.device_id or row["tenant"] != answer.tenant:
                outcomes[i] = AckOutcome.FOREIGN
            elif row["state"] == CommandState.EXPIRED.value:
                outcomes[i] = AckOutcome.LATE
                late = f"late answer: {answer.status}"
                if answer.detail:
                    late += f" ({answer.detail})"
                late_events.append(
                    {
                        "command_id": answer.command_id,
                        "state": "late_answer",
                        "at": now,
                        "detail": late[:500],
                    }
                )
            else:
                outcomes[i] = AckOutcome.DUPLICATE
        if late_events:
            conn.execute(insert(command_events), late_events)

    def expire_due(self, now: datetime | None = None, *, grace_s: float = 0.0) -> int:
        """Mark expired every open command whose deadline passed more than `grace_s` ago."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(seconds=grace_s)
        with self._begin() as conn:
            expired = list(
                conn.scalars(
                    update(commands)
                    .where(commands.c.state.in_(OPEN_STATES), commands.c.expires_at < cutoff)
                    .values(
                        state=CommandState.EXPIRED.value,
                        finished_at=now,
                        detail="no answer by the deadline",
                    )
                    .returning(commands.c.id)
                )
            )
            if expired:
                conn.execute(
                    insert(command_events),
                    [
                        {"command_id": i, "state": CommandState.EXPIRED.value, "at": now}
                        for i in expired
                    ],
                )
        return len(expired)

    def purge(self, before: datetime) -> int:
        """Delete commands (and their events) created before `before`, and emptied groups."""
        with self._begin() as conn:
            old = select(commands.c.id).where(commands.c.created_at < before)
            conn.execute(delete(command_events).where(command_events.c.command_id.in_(old)))
            gone = conn.execute(delete(commands).where(commands.c.created_at < before)).rowcount
            conn.execute(delete(command_groups).where(command_groups.c.created_at < before))
        return int(gone)

    # -- reading -------------------------------------------------------------------------------

    def command(self, command_id: str) -> Command:
        """One command with its events, oldest first."""
        with self._begin() as conn:
            row = conn.execute(select(commands).where(commands.c.id == command_id)).mappings()
            found = row.first()
            if found is None:
                raise NotFound("command", command_id)
            events = [
                CommandEvent(e["state"], stored_utc(e["at"]), e["detail"])
                for e in conn.execute(
                    select(command_events)
                    .where(command_events.c.command_id == command_id)
                    .order_by(command_events.c.id)
                ).mappings()
            ]
        return _command(found, events)

    def history(
        self,
        *,
        tenants: Sequence[str] | None = None,
        device_id: str | None = None,
        group_id: str | None = None,
        state: str | None = None,
        name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> HistoryPage:
        """Commands newest first, filtered; `after` is the previous page's last key."""
        query = select(commands)
        if tenants is not None:
            query = query.where(commands.c.tenant.in_(list(tenants)))
        for column, value in (
            (commands.c.device_id, device_id),
            (commands.c.group_id, group_id),
            (commands.c.state, state),
            (commands.c.name, name),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(commands.c.created_at >= since)
        if until is not None:
            query = query.where(commands.c.created_at < until)
        if after is not None:
            at, last_id = after
            query = query.where(
                or_(
                    commands.c.created_at < at,
                    and_(commands.c.created_at == at, commands.c.id < last_id),
                )
            )
        query = query.order_by(commands.c.created_at.desc(), commands.c.id.desc()).limit(limit + 1)
        with self._begin() as conn:
            rows = [_command(r) for r in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        return HistoryPage(rows, (rows[-1].created_at, rows[-1].id) if more else None)

    def group(self, group_id: str) -> CommandGroup:
        """A group command with its progress: how many of its commands are in each state."""
        with self._begin() as conn:
            row = (
                conn.execute(select(command_groups).where(command_groups.c.id == group_id))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound("command group", group_id)
            counts = {
                str(state): int(count)
                for state, count in conn.execute(
                    select(commands.c.state, func.count())
                    .where(commands.c.group_id == group_id)
                    .group_by(commands.c.state)
                )
            }
        return _group(row, counts)
