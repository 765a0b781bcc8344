"""The API's FleetCache and OpenDataCache follow the registry change by change (SQLite and
PostgreSQL).

After every change the fleet answers what the registry itself answers, having read only the
devices that changed (`rows_fetched`); one tenant's devices never include another's. The open
data is read again only for the publications that changed.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import create_engine, text

from api.fleet import FleetCache
from api.open_access import OpenDataCache
from devices import Device, Registry
from devices.opendata import Licence, Publication
from tests.devices import conftest as registries
from tests.devices.conftest import AMSTERDAM, UTRECHT

pytestmark = pytest.mark.anyio

registry_url = registries.registry_url
registry = registries.registry

FLEET = 300


def device(n: int, tenant: str, kind: str = "air_quality") -> Device:
    return Device(f"dev-{n:04d}", tenant, kind, f"Device {n}", 52.0, 5.0, interval_s=60.0)


async def same_as_registry(cache: FleetCache, registry: Registry) -> None:
    """The cache answers every filter as the registry does."""
    assert await cache.devices() == registry.devices()
    for tenant in (AMSTERDAM.code, UTRECHT.code):
        assert await cache.devices(tenants=[tenant]) == registry.devices(tenants=[tenant])
    both = [UTRECHT.code, AMSTERDAM.code]
    assert await cache.devices(tenants=both) == registry.devices(tenants=both)
    assert await cache.devices(tenants=[]) == []
    assert await cache.devices(kind="noise", include_retired=False) == registry.devices(
        kind="noise", include_retired=False
    )


async def test_each_change_is_read_alone_and_answered_like_the_registry(
    registry: Registry,
) -> None:
    tenants = (AMSTERDAM.code, UTRECHT.code)
    registry.add_devices([device(n, tenants[n % 2]) for n in range(0, 2 * FLEET, 2)])
    cache = FleetCache(registry)
    await same_as_registry(cache, registry)
    assert (cache.rows_fetched, cache.full_reads) == (FLEET, 1)

    registry.add_device(device(301, UTRECHT.code))  # lands between existing ids
    await same_as_registry(cache, registry)
    registry.update("dev-0004", {"kind": "noise"})
    await same_as_registry(cache, registry)
    registry.retire("dev-0010")
    await same_as_registry(cache, registry)
    registry.set_password_hash("dev-0012", "$7$new")
    await same_as_registry(cache, registry)
    assert (cache.rows_fetched, cache.full_reads) == (FLEET + 4, 1)

    amsterdam = await cache.devices(tenants=[AMSTERDAM.code])
    assert {d.tenant for d in amsterdam} == {AMSTERDAM.code}
    assert "dev-0301" not in {d.device_id for d in amsterdam}


async def test_a_restored_registry_is_read_whole(registry: Registry) -> None:
    registry.add_devices([device(n, AMSTERDAM.code) for n in range(FLEET)])
    cache = FleetCache(registry)
    await same_as_registry(cache, registry)
    engine = create_engine(registry.url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE registry_state SET revision = 1"))
            connection.execute(text("UPDATE devices SET name = 'restored'"))
    finally:
        engine.dispose()
    await same_as_registry(cache, registry)
    assert cache.full_reads == 2
    assert {d.name for d in await cache.devices()} == {"restored"}


async def test_open_data_is_read_again_only_when_a_publication_changed(
    registry: Registry,
) -> None:
    registry.add_devices([device(n, AMSTERDAM.code) for n in range(10)])
    cache = OpenDataCache(registry)
    assert (await cache.get()).publications == {}
    ams = registry.publish(Publication(AMSTERDAM.code, Licence.CC0, "Gemeente", ("noise",)))
    assert (await cache.get()).publications == {AMSTERDAM.code: ams}
    assert cache.publications_fetched == 1

    # Devices change, publications do not: none is read again.
    registry.add_device(device(10, AMSTERDAM.code))
    registry.retire("dev-0003")
    assert (await cache.get()).publications == {AMSTERDAM.code: ams}
    assert cache.publications_fetched == 1

    utr = registry.publish(Publication(UTRECHT.code, Licence.CC0, "Utrecht", ("weather",)))
    ams = registry.publish(replace(ams, kinds=("air_quality",), devices=("dev-0001",)))
    got = await cache.get()
    assert got.publications == {AMSTERDAM.code: ams, UTRECHT.code: utr}
    assert got.admits(registry.device("dev-0001"))
    assert cache.publications_fetched == 3

    registry.withdraw(AMSTERDAM.code)
    assert (await cache.get()).publications == {UTRECHT.code: utr}
    assert cache.publications_fetched == 3
