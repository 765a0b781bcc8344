"""Registry.device_changes: what changed after a revision, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from devices import Device, Registry, Tenant
from tests.devices.conftest import AMSTERDAM, UTRECHT


def lamp(n: int, tenant: str = AMSTERDAM.code) -> Device:
    return Device(f"lamp-{n:04d}", tenant, "lamppost", f"Lamp {n}", 52.37, 4.89, interval_s=60.0)


def test_only_the_devices_changed_after_a_revision_come_back(registry: Registry) -> None:
    registry.add_devices([lamp(n) for n in range(40)])
    first = registry.device_changes()
    assert first.complete
    assert [d.device_id for d in first.devices] == [f"lamp-{n:04d}" for n in range(40)]
    assert first.device_count == 40

    unchanged = registry.device_changes(first.revision)
    assert (unchanged.revision, unchanged.devices, unchanged.complete) == (
        first.revision,
        [],
        False,
    )

    registry.add_device(lamp(40, UTRECHT.code))
    registry.update("lamp-0003", {"name": "Dam 3"})
    registry.retire("lamp-0007")
    registry.set_password_hash("lamp-0009", "$7$hash")
    registry.add_tenant(Tenant("GM0599", "Rotterdam"))  # moves only the revision
    later = registry.device_changes(first.revision)
    assert not later.complete
    assert later.revision == first.revision + 5
    assert later.device_count == 41
    assert [d.device_id for d in later.devices] == [
        "lamp-0003",
        "lamp-0007",
        "lamp-0009",
        "lamp-0040",
    ]
    by_id = {d.device_id: d for d in later.devices}
    assert by_id["lamp-0003"].name == "Dam 3"
    assert by_id["lamp-0007"].retired
    assert by_id["lamp-0040"].tenant == UTRECHT.code
    # A change read once is not read again.
    assert registry.device_changes(later.revision).devices == []


def test_a_registry_whose_revision_went_back_is_read_whole(registry: Registry) -> None:
    registry.add_devices([lamp(n) for n in range(5)])
    seen = registry.device_changes()
    registry.add_device(lamp(5))
    # As after restoring a backup taken before the reader's last read.
    engine = create_engine(registry.url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE registry_state SET revision = 1"))
    engine.dispose()
    again = registry.device_changes(seen.revision)
    assert again.complete
    assert len(again.devices) == again.device_count == 6
