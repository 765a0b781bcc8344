"""The registry on real SQLite and PostgreSQL: tenants, devices, filters, bad input, migrations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

# Modules that declare their tables on the registry's Base (commands, schedules).
import devices.command_history
import devices.schedule_store  # noqa: F401
from devices import (
    BoundingBox,
    Conflict,
    Device,
    InvalidDevice,
    NotFound,
    Registry,
    Tenant,
)
from devices.registry import MIGRATIONS
from devices.registry.rows import Base
from tests.devices.conftest import AMSTERDAM


def lamppost(device_id: str, **changes: object) -> Device:
    """A valid Amsterdam lamppost near the Dam."""
    device = Device(
        device_id=device_id,
        tenant="GM0363",
        kind="lamppost",
        name=f"Lamppost {device_id}",
        latitude=52.3731,
        longitude=4.8926,
    )
    return replace(device, **changes)  # type: ignore[arg-type]


def test_tenants_are_stored_listed_and_paged(registry: Registry) -> None:
    assert registry.tenant("GM0363") == AMSTERDAM
    assert [t.code for t in registry.tenants()] == ["GM0344", "GM0363"]
    assert [t.code for t in registry.tenants(limit=1)] == ["GM0344"]
    assert [t.code for t in registry.tenants(after="GM0344")] == ["GM0363"]
    with pytest.raises(NotFound, match="GM9999"):
        registry.tenant("GM9999")


def test_bad_tenants_are_refused_with_every_problem(registry: Registry) -> None:
    before = registry.revision()
    with pytest.raises(Conflict, match="GM0363"):
        registry.add_tenant(Tenant("GM0363", "Amsterdam again"))
    with pytest.raises(InvalidDevice) as caught:
        registry.add_tenant(Tenant("GM 0001", " ", ("2001:db8::1/32", "10.0.0.0/8")))
    fields = [p.field for p in caught.value.problems]
    assert fields == ["code", "name", "ipv6_prefixes", "ipv6_prefixes"]
    assert "host bits set" in caught.value.message
    assert "IPv4" in caught.value.message
    assert registry.revision() == before
    assert len(registry.tenants()) == 2


def test_a_device_keeps_every_field(registry: Registry) -> None:
    device = Device(
        device_id="gm0363-lp-00001",
        tenant="GM0363",
        kind="lamppost",
        extra_kinds=("air_quality", "noise"),
        name="Damrak 1",
        latitude=52.3752,
        longitude=4.8963,
        ipv6_address="2001:0db8:0363:0000:0000:0000:0000:0001",
        interval_s=300.0,
        firmware="talq-2.1.0",
        installed_on=date(2024, 3, 1),
        owner="Gemeente Amsterdam",
        observation_goal="Dimming and failure detection of street lighting",
        legal_ground="Gemeentewet art. 108",
        personal_data=False,
        active_until=date(2034, 3, 1),
    )
    stored = registry.add_device(device)
    assert stored.ipv6_address == "2001:db8:363::1"  # stored in canonical form
    assert replace(stored, ipv6_address=device.ipv6_address) == device
    assert stored.created_at is not None
    assert stored.created_at.tzinfo is not None
    assert registry.device("gm0363-lp-00001") == stored


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"ipv6_address": "2001:db8:363::zz"}, "ipv6_address", ["not an IP address"]),
        ({"ipv6_address": "2001:db8:344::5"}, "ipv6_address", ["2001:db8:363::/48", "GM0363"]),
        ({"ipv6_address": "fe80::1"}, "ipv6_address", ["global unicast", "unique-local"]),
        ({"ipv6_address": "192.0.2.1"}, "ipv6_address", ["IPv4"]),
        ({"kind": "streetlight"}, "kind", ["unknown device kind 'streetlight'", "lamppost"]),
        ({"extra_kinds": ("noise", "radar")}, "extra_kinds", ["'radar'"]),
        ({"latitude": 91.0}, "latitude", ["-90..90"]),
        ({"longitude": -180.5}, "longitude", ["-180..180"]),
        ({"tenant": "GM0000"}, "tenant", ["'GM0000' does not exist"]),
        ({"device_id": "Lamp_1"}, "device_id", ["[a-z0-9]"]),
        ({"interval_s": 0.0}, "interval_s", ["> 0"]),
        ({"name": "x" * 201}, "name", ["200"]),
    ],
)
def test_bad_devices_are_refused_clearly_and_change_nothing(
    registry: Registry, changes: dict[str, object], field: str, words: list[str]
) -> None:
    registry.add_device(lamppost("gm0363-lp-00001"))
    before = (registry.revision(), registry.devices())
    with pytest.raises(InvalidDevice) as caught:
        registry.add_device(replace(lamppost("gm0363-lp-00002"), **changes))  # type: ignore[arg-type]
    assert caught.value.field == field
    for word in words:
        assert word in caught.value.message
    assert (registry.revision(), registry.devices()) == before


def test_a_duplicate_id_is_a_conflict_and_changes_nothing(registry: Registry) -> None:
    registry.add_device(lamppost("gm0363-lp-00001"))
    before = (registry.revision(), registry.devices())
    with pytest.raises(Conflict, match="gm0363-lp-00001"):
        registry.add_device(lamppost("gm0363-lp-00001", name="another"))
    assert (registry.revision(), registry.devices()) == before


def test_every_problem_of_a_device_is_listed_at_once(registry: Registry) -> None:
    with pytest.raises(InvalidDevice) as caught:
        registry.add_device(
            lamppost("gm0363-lp-00009", kind="x", latitude=100.0, ipv6_address="2001:db8:1::1")
        )
    assert [p.field for p in caught.value.problems] == ["kind", "latitude", "ipv6_address"]


def test_an_address_belongs_to_one_device(registry: Registry) -> None:
    registry.add_device(lamppost("gm0363-lp-00001", ipv6_address="2001:db8:363::a"))
    with pytest.raises(InvalidDevice, match="already device gm0363-lp-00001"):
        registry.add_device(lamppost("gm0363-lp-00002", ipv6_address="2001:db8:363:0::A"))


def test_adding_several_is_all_or_nothing(registry: Registry) -> None:
    good = lamppost("gm0363-lp-00001")
    with pytest.raises(InvalidDevice):
        registry.add_devices([good, lamppost("gm0363-lp-00002", kind="nope")])
    assert registry.devices() == []


def test_update_changes_what_is_given_and_checks_it(registry: Registry) -> None:
    registry.add_device(lamppost("gm0363-lp-00001", owner="Gemeente Amsterdam"))
    before = registry.revision()
    updated = registry.update(
        "gm0363-lp-00001",
        {"name": "Damrak 2", "ipv6_address": "2001:db8:363::2", "extra_kinds": ("noise",)},
    )
    assert (updated.name, updated.ipv6_address, updated.extra_kinds) == (
        "Damrak 2",
        "2001:db8:363::2",
        ("noise",),
    )
    assert updated.owner == "Gemeente Amsterdam"
    assert registry.revision() > before
    after = (registry.revision(), registry.device("gm0363-lp-00001"))
    with pytest.raises(InvalidDevice, match="2001:db8:363::/48"):
        registry.update("gm0363-lp-00001", {"ipv6_address": "2001:db8:344::1"})
    with pytest.raises(InvalidDevice, match="tenant cannot be changed"):
        registry.update("gm0363-lp-00001", {"tenant": "GM0344"})
    with pytest.raises(NotFound):
        registry.update("gm0363-lp-99999", {"name": "x"})
    assert (registry.revision(), registry.device("gm0363-lp-00001")) == after


def test_retiring_keeps_the_device_and_drops_its_broker_login(registry: Registry) -> None:
    registry.add_device(lamppost("gm0363-lp-00001"), password_hash="$7$101$c2FsdA==$aGFzaA==")
    registry.add_device(lamppost("gm0363-lp-00002"), password_hash="$7$101$c2FsdA==$aGFzaA==")
    assert [login.username for login in registry.broker_logins()] == [
        "GM0363/gm0363-lp-00001",
        "GM0363/gm0363-lp-00002",
    ]
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    retired = registry.retire("gm0363-lp-00001", when)
    assert retired.retired_at == when
    assert registry.retire("gm0363-lp-00001").retired_at == when  # again: nothing changes
    assert [login.device_id for login in registry.broker_logins()] == ["gm0363-lp-00002"]
    with pytest.raises(InvalidDevice, match="retired"):
        registry.set_password_hash("gm0363-lp-00001", "$7$101$c2FsdA==$aGFzaA==")
    assert [d.device_id for d in registry.devices(status="retired")] == ["gm0363-lp-00001"]
    assert [d.device_id for d in registry.devices(status="active")] == ["gm0363-lp-00002"]
    assert len(registry.devices()) == 2


def test_filters_and_pages(registry: Registry) -> None:
    registry.add_devices(
        [
            lamppost("a-dam", latitude=52.37, longitude=4.89),
            lamppost("b-dam", kind="noise", latitude=52.36, longitude=4.90),
            replace(lamppost("c-utrecht", latitude=52.09, longitude=5.12), tenant="GM0344"),
            replace(lamppost("d-fiji", latitude=-17.7, longitude=179.5), tenant="GM0344"),
            replace(lamppost("e-samoa", latitude=-13.8, longitude=-171.8), tenant="GM0344"),
        ]
    )

    def ids(**filters: object) -> list[str]:
        return [d.device_id for d in registry.devices(**filters)]  # type: ignore[arg-type]

    assert ids(tenants=["GM0363"]) == ["a-dam", "b-dam"]
    assert ids(kind="noise") == ["b-dam"]
    assert ids(tenants=["GM0344"], kind="lamppost") == ["c-utrecht", "d-fiji", "e-samoa"]
    amsterdam = BoundingBox(4.7, 52.2, 5.1, 52.45)
    assert ids(bbox=amsterdam) == ["a-dam", "b-dam"]
    assert ids(bbox=BoundingBox(4.89, 52.37, 4.89, 52.37)) == ["a-dam"]  # edges included
    assert ids(bbox=BoundingBox(179.0, -20.0, -170.0, -10.0)) == ["d-fiji", "e-samoa"]
    assert ids(limit=2) == ["a-dam", "b-dam"]
    assert ids(after="b-dam", limit=2) == ["c-utrecht", "d-fiji"]


def test_bounding_box_text_is_checked() -> None:
    assert BoundingBox.parse("4.7,52.2,5.1,52.45") == BoundingBox(4.7, 52.2, 5.1, 52.45)
    for bad, words in [
        ("4.7,52.2,5.1", "four numbers"),
        ("a,b,c,d", "not four numbers"),
        ("4.7,95,5.1,96", "minLat 95.0 is outside"),
        ("4.7,53,5.1,52", "above maxLat"),
    ]:
        with pytest.raises(ValueError, match=words):
            BoundingBox.parse(bad)


def test_the_fingerprint_moves_on_every_change_and_another_process_sees_it(
    registry: Registry,
) -> None:
    other = Registry(registry.url)
    with other:
        seen = [other.revision()]
        registry.add_device(lamppost("gm0363-lp-00001"))
        seen.append(other.revision())
        registry.update("gm0363-lp-00001", {"name": "renamed"})
        seen.append(other.revision())
        registry.set_password_hash("gm0363-lp-00001", "$7$101$c2FsdA==$aGFzaA==")
        seen.append(other.revision())
        registry.retire("gm0363-lp-00001")
        seen.append(other.revision())
        assert len(set(seen)) == len(seen)
        assert seen[-1][1] == 1  # one device
        assert [d.name for d in other.devices()] == ["renamed"]


def _legacy_database(url: str) -> None:
    """What the registry looked like before migrations: create_all's layout, no version table."""
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(
            text("INSERT INTO tenants (code, name, ipv6_prefixes) VALUES ('GM0363', 'A', '[]')")
        )
        conn.execute(
            text(
                "INSERT INTO devices (device_id, tenant, kind, name, latitude, longitude, "
                "extra_kinds, personal_data, created_at, revision) VALUES ('old-1', 'GM0363', "
                "'noise', 'Old', 52.0, 4.0, '[]', false, '2024-01-01 00:00:00+00:00', 7)"
            )
        )
    engine.dispose()


def test_a_database_from_before_migrations_is_brought_up_to_date(registry_url: str) -> None:
    _legacy_database(registry_url)
    with Registry(registry_url) as registry:
        assert [d.device_id for d in registry.devices()] == ["old-1"]
        assert registry.revision() == (7, 1)
        registry.add_device(
            Device("new-1", "GM0363", "noise", "New", 52.1, 4.1),
            password_hash="$7$101$c2FsdA==$aGFzaA==",
        )
        assert registry.revision() == (8, 2)
        assert [login.device_id for login in registry.broker_logins()] == ["new-1"]
    engine = create_engine(registry_url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        columns = {c["name"] for c in inspect(conn).get_columns("devices")}
    engine.dispose()
    assert version == "g0011"  # the newest revision (the covering change indexes, r0011)
    assert "broker_password_hash" in columns
    with Registry(registry_url) as again:  # opening an up-to-date registry changes nothing
        assert again.revision() == (8, 2)


def test_the_tables_declared_are_the_tables_migrated(registry_url: str) -> None:
    # rows.py and the migrations describe one schema: a column or index added to one without
    # the other is caught here, on both databases.
    with Registry(registry_url):
        pass
    engine = create_engine(registry_url)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert differences == []
