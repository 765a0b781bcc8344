"""The command store on SQLite and PostgreSQL: lifecycle, idempotent answers, expiry, the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devices import Device, Registry
from devices.command_history import (
    AckOutcome,
    Answer,
    CommandState,
    CommandStore,
    Issuer,
    NewCommand,
)
from devices.commands_catalogue import command_problems, commands_of

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
OPERATOR = Issuer("k1", "operator")


def _lamp(n: int, tenant: str = "GM0363") -> Device:
    return Device(f"lp-{n}", tenant, "lamppost", f"Lamp {n}", 52.37, 4.89)


@pytest.fixture
def store(registry: Registry, registry_url: str) -> Iterator[CommandStore]:
    """An open command store beside a registry with lamps lp-1, lp-2 (GM0363), lp-3 (GM0344)."""
    registry.add_devices([_lamp(1), _lamp(2), _lamp(3, "GM0344")])
    with CommandStore(registry_url) as opened:
        yield opened


def _dim(
    device: str, tenant: str = "GM0363", deadline: datetime = T0 + timedelta(minutes=5)
) -> NewCommand:
    return NewCommand(tenant, device, "set_dim_level", {"level": 40}, deadline)


def test_a_command_goes_created_sent_done_with_each_change_recorded(store: CommandStore) -> None:
    (made,), group = store.create([_dim("lp-1")], OPERATOR, now=T0)
    assert group is None
    assert made.state is CommandState.CREATED
    assert store.mark_sent([made.id], T0 + timedelta(seconds=1)) == 1
    answered = T0 + timedelta(seconds=2)
    outcome = store.record_ack("GM0363", "lp-1", made.id, "done", "level 40", answered)
    assert outcome is AckOutcome.APPLIED
    stored = store.command(made.id)
    assert stored.state is CommandState.DONE
    assert stored.detail == "level 40"
    assert stored.issuer == OPERATOR
    assert [e.state for e in stored.events] == ["created", "sent", "done"]
    assert stored.sent_at == T0 + timedelta(seconds=1)


def test_an_answer_applies_once_and_only_from_its_own_device(store: CommandStore) -> None:
    (made,), _ = store.create([_dim("lp-1")], OPERATOR, now=T0)
    # Another device (even of the same tenant) cannot answer for lp-1.
    assert store.record_ack("GM0363", "lp-2", made.id, "failed", None) is AckOutcome.FOREIGN
    assert store.record_ack("GM0344", "lp-1", made.id, "failed", None) is AckOutcome.FOREIGN
    assert store.command(made.id).state is CommandState.CREATED
    assert store.record_ack("GM0363", "lp-1", made.id, "refused", "busy") is AckOutcome.APPLIED
    # A redelivered copy, or a contradicting second answer, changes nothing.
    assert store.record_ack("GM0363", "lp-1", made.id, "done", None) is AckOutcome.DUPLICATE
    assert store.record_ack("GM0363", "lp-1", "no-such-id", "done", None) is AckOutcome.UNKNOWN
    stored = store.command(made.id)
    assert stored.state is CommandState.REFUSED
    assert [e.state for e in stored.events] == ["created", "refused"]
    # A PUBACK recorded after the answer keeps the answer and still records the send.
    assert store.mark_sent([made.id]) == 0
    assert store.command(made.id).state is CommandState.REFUSED
    assert store.command(made.id).sent_at is not None


def test_open_commands_expire_after_their_deadline_and_late_answers_are_kept(
    store: CommandStore,
) -> None:
    soon = T0 + timedelta(seconds=30)
    (a, b, c), _ = store.create(
        [_dim("lp-1", deadline=soon), _dim("lp-2", deadline=soon), _dim("lp-1")], OPERATOR, now=T0
    )
    store.mark_sent([a.id, b.id, c.id], T0)
    store.record_ack("GM0363", "lp-2", b.id, "done", None, T0 + timedelta(seconds=5))
    assert store.expire_due(soon + timedelta(seconds=1), grace_s=5) == 0  # within the grace
    assert store.expire_due(soon + timedelta(seconds=6), grace_s=5) == 1
    assert store.expire_due(soon + timedelta(seconds=7), grace_s=5) == 0  # once only
    assert store.command(a.id).state is CommandState.EXPIRED
    assert store.command(b.id).state is CommandState.DONE
    assert store.command(c.id).state is CommandState.SENT
    assert store.record_ack("GM0363", "lp-1", a.id, "done", None) is AckOutcome.LATE
    assert store.command(a.id).state is CommandState.EXPIRED
    assert [e.state for e in store.command(a.id).events][-1] == "late_answer"


def test_the_outbox_hands_each_command_to_one_publisher_until_its_lease_ends(
    store: CommandStore,
) -> None:
    made, _ = store.create([_dim("lp-1"), _dim("lp-2")], OPERATOR, now=T0)
    first = store.claim_unsent("replica-a", limit=10, lease_s=30, now=T0)
    assert {c.id for c in first} == {c.id for c in made}
    assert store.claim_unsent("replica-b", limit=10, lease_s=30, now=T0) == []
    # replica-a died without publishing: after the lease, replica-b takes them.
    again = store.claim_unsent("replica-b", limit=1, lease_s=30, now=T0 + timedelta(seconds=31))
    assert len(again) == 1
    store.mark_sent([again[0].id])
    rest = store.claim_unsent("replica-b", limit=10, lease_s=30, now=T0 + timedelta(seconds=62))
    assert [c.id for c in rest] == [c.id for c in made if c.id != again[0].id]
    # Given back (the broker was away): free for anyone at once, lease or not.
    store.release([c.id for c in rest])
    freed = store.claim_unsent("replica-c", limit=10, lease_s=30, now=T0 + timedelta(seconds=63))
    assert [c.id for c in freed] == [c.id for c in rest]
    # Past its deadline nobody publishes it any more.
    store.release([c.id for c in freed])
    assert store.claim_unsent("replica-c", limit=10, lease_s=30, now=T0 + timedelta(hours=1)) == []


def test_groups_report_progress_and_history_pages_newest_first(store: CommandStore) -> None:
    _, group = store.create(
        [_dim("lp-1"), _dim("lp-2")], OPERATOR, group_selector={"tenant": "GM0363"}, now=T0
    )
    assert group is not None
    later, _ = store.create([_dim("lp-3", "GM0344")], OPERATOR, now=T0 + timedelta(seconds=1))
    page = store.history(group_id=group.id, limit=10)
    ids = [c.id for c in page.items]
    store.mark_sent(ids)
    lp1 = next(c.id for c in page.items if c.device_id == "lp-1")
    store.record_ack("GM0363", "lp-1", lp1, "done", None)
    assert store.group(group.id).progress == {"sent": 1, "done": 1}
    everything = store.history(limit=2)
    assert everything.items[0].id == later[0].id
    assert everything.after is not None
    rest = store.history(limit=2, after=everything.after)
    assert len(rest.items) == 1
    assert rest.after is None
    assert [c.tenant for c in store.history(tenants=["GM0344"]).items] == ["GM0344"]


def test_the_audit_trail_is_purged_after_its_retention(store: CommandStore) -> None:
    store.create([_dim("lp-1")], OPERATOR, now=T0 - timedelta(days=400))
    new, _ = store.create([_dim("lp-1")], OPERATOR, now=T0)
    assert store.purge(T0 - timedelta(days=365)) == 1
    assert [c.id for c in store.history().items] == [new[0].id]


def test_the_catalogue_names_every_bad_argument() -> None:
    assert {c.name for c in commands_of("lamppost")} == {
        "set_dim_level",
        "switch",
        "set_schedule",
        "set_interval",
        "reboot",
    }
    assert {c.name for c in commands_of("noise")} == {"set_interval", "reboot"}
    assert command_problems("lamppost", "set_dim_level", {"level": 40}) == []
    fields = [p.field for p in command_problems("lamppost", "set_dim_level", {"level": 140.5})]
    assert fields == ["args.level"]
    bad = command_problems("lamppost", "switch", {"on": 1, "colour": "red"})
    assert [p.field for p in bad] == ["args.on", "args.colour"]
    assert [p.field for p in command_problems("noise", "switch", {"on": True})] == ["name"]
    missing = command_problems("lamppost", "set_schedule", {})
    assert [p.field for p in missing] == ["args.scheduleId"]
    assert command_problems("lamppost", "set_interval", {"seconds": True}) != []


def test_answers_recorded_together_each_get_their_own_outcome(store: CommandStore) -> None:
    soon = T0 + timedelta(seconds=10)
    (a, b, c, gone), _ = store.create(
        [_dim("lp-1"), _dim("lp-2"), _dim("lp-3", "GM0344"), _dim("lp-1", deadline=soon)],
        OPERATOR,
        now=T0,
    )
    store.expire_due(soon + timedelta(seconds=1))
    outcomes = store.record_answers(
        [
            Answer("GM0363", "lp-1", a.id, "done", "level 40"),
            Answer("GM0363", "lp-1", a.id, "done", "level 40"),  # the same, redelivered
            Answer("GM0363", "lp-2", b.id, "failed", "driver fault"),
            Answer("GM0363", "lp-2", c.id, "done", "level 40"),  # lp-3's command
            Answer("GM0363", "lp-1", "nothing-like-it", "done", None),
            Answer("GM0363", "lp-1", gone.id, "done", "level 40"),
        ],
        T0 + timedelta(seconds=20),
    )
    assert outcomes == [
        AckOutcome.APPLIED,
        AckOutcome.DUPLICATE,
        AckOutcome.APPLIED,
        AckOutcome.FOREIGN,
        AckOutcome.UNKNOWN,
        AckOutcome.LATE,
    ]
    assert store.command(a.id).state is CommandState.DONE
    assert [e.state for e in store.command(a.id).events] == ["created", "done"]
    assert store.command(b.id).state is CommandState.FAILED
    assert store.command(b.id).detail == "driver fault"
    assert store.command(c.id).state is CommandState.CREATED
    assert store.command(gone.id).state is CommandState.EXPIRED
