"""Simulated lamps obey commands: their telemetry follows, they answer once per command id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devices import Device
from devices.command_messages import CommandMessage
from simulators.clock import SimClock
from simulators.device import SimulatedDevice

NIGHT = datetime(2026, 12, 3, 1, 0, tzinfo=UTC).timestamp()  # dark in Amsterdam
NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()
LAMP = Device("gm0363-lp-1", "GM0363", "lamppost", "Damrak", 52.3752, 4.8963)


def _lamp() -> SimulatedDevice:
    return SimulatedDevice(LAMP, 7, SimClock(NIGHT))


def _command(name: str, args: dict[str, object], command_id: str = "c-1") -> bytes:
    issued = datetime.fromtimestamp(NIGHT, UTC)
    return CommandMessage(
        id=command_id,
        name=name,
        args=args,
        issued_at=issued,
        expires_at=issued + timedelta(minutes=5),
    ).payload()


def test_dim_level_and_power_follow_an_accepted_command() -> None:
    lamp = _lamp()
    before = lamp.state.reading(NIGHT)
    assert before["dim_level"] == 50.0  # the default night profile
    answer = lamp.command(_command("set_dim_level", {"level": 20}), NIGHT)
    assert (answer.id, answer.status) == ("c-1", "done")
    after = lamp.state.reading(NIGHT + 60)
    assert after["dim_level"] == 20.0
    nominal = lamp.state.nominal_w
    assert 0.4 + 0.2 * nominal * 0.97 <= after["active_power"] <= 0.6 + 0.2 * nominal * 1.03


def test_switching_overrides_the_photocell_both_ways() -> None:
    lamp = _lamp()
    lamp.command(_command("switch", {"on": False}), NIGHT)
    dark = lamp.state.reading(NIGHT)
    assert dark["dim_level"] == 0.0
    assert dark["active_power"] < 1.0  # standby only
    lamp.command(_command("switch", {"on": True}, "c-2"), NIGHT)
    assert lamp.state.reading(NOON)["dim_level"] == 100.0  # on at noon: forced


def test_a_repeated_id_is_answered_alike_and_not_carried_out_twice() -> None:
    lamp = _lamp()
    first = lamp.command(_command("set_dim_level", {"level": 30}), NIGHT)
    lamp.state.dim_setting = 77.0  # changed since, by something else
    again = lamp.command(_command("set_dim_level", {"level": 30}), NIGHT + 5)
    assert again == first
    assert lamp.state.dim_setting == 77.0


def test_a_lamp_refuses_what_does_not_fit_or_came_too_late() -> None:
    lamp = _lamp()
    bad = lamp.command(_command("set_dim_level", {"level": 300}), NIGHT)
    assert bad.status == "refused"
    assert bad.detail is not None
    assert "level" in bad.detail
    assert lamp.state.dim_setting is None
    late = lamp.command(_command("reboot", {}, "c-9"), NIGHT + 3600)
    assert (late.status, late.detail) == ("refused", "past its deadline")
    garbage = lamp.command(b'{"id": "c-x", "name": ', NIGHT)
    assert garbage.status == "refused"
    interval = lamp.command(_command("set_interval", {"seconds": 60}, "c-3"), NIGHT)
    assert interval.status == "done"
    assert lamp.interval_s == 60.0
