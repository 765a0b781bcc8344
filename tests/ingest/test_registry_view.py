"""The worker's registry view follows the registry change by change (SQLite and PostgreSQL).

One device added, changed or retired among many is read alone (`rows_fetched` counts what the
view read), applied to the decoder in place, and the decoder takes or refuses its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest
from sqlalchemy import create_engine, text

from devices import Device, Registry, Tenant, topic
from ingest.decode import Decoded, TimeRules
from ingest.reasons import Reason
from ingest.registry_view import RegistryView
from tests.devices import conftest as registries
from tests.devices.conftest import AMSTERDAM, UTRECHT
from timeseries.schema import raw_measurement

pytestmark = pytest.mark.anyio

registry_url = registries.registry_url
registry = registries.registry

FLEET = 300


def sensor(n: int, tenant: str = AMSTERDAM.code) -> Device:
    return Device(f"aq-{n:04d}", tenant, "air_quality", f"Sensor {n}", 52.37, 4.89, interval_s=60.0)


def decode(view: RegistryView, devices: list[Device], metric: str = "pm25") -> Decoded:
    """Decode one reading of `metric` from each device, as the worker would."""
    out = Decoded()
    for device in devices:
        payload = orjson.dumps({"metrics": {metric: 12.0}})
        view.decoder.decode(topic(device.tenant, device.device_id), payload, time.time_ns(), out)
    return out


def reasons(out: Decoded) -> list[Reason]:
    return [r.reason for r in out.rejections]


async def started(registry: Registry) -> RegistryView:
    registry.add_devices([sensor(n) for n in range(FLEET)])
    view = RegistryView(registry, TimeRules())
    assert await view.refresh()
    assert (view.rows_fetched, view.full_reads) == (FLEET, 1)
    return view


async def test_an_added_device_is_read_alone_and_its_messages_are_taken(registry: Registry) -> None:
    view = await started(registry)
    new = sensor(FLEET)
    assert reasons(decode(view, [new])) == [Reason.UNKNOWN_DEVICE]
    decoder = view.decoder
    registry.add_device(new)
    assert await view.refresh()
    assert (view.rows_fetched, view.full_reads) == (FLEET + 1, 1)
    assert view.decoder is decoder  # changed in place, every other route kept
    out = decode(view, [new])
    assert out.rejections == []
    assert [dict(p.tags)["device_id"] for p in out.points] == [new.device_id]
    # Nothing changed: nothing read.
    assert not await view.refresh()
    assert view.rows_fetched == FLEET + 1


async def test_a_changed_device_is_decoded_as_it_is_now(registry: Registry) -> None:
    view = await started(registry)
    device = sensor(7)
    assert len(decode(view, [device]).points) == 1  # its route is now remembered
    assert reasons(decode(view, [device], "laeq")) == [Reason.UNKNOWN_METRIC]
    registry.update(device.device_id, {"kind": "noise"})
    assert await view.refresh()
    assert view.rows_fetched == FLEET + 1
    out = decode(view, [device], "laeq")
    assert out.rejections == []
    assert [p.measurement for p in out.points] == [raw_measurement("noise")]
    assert reasons(decode(view, [device], "pm25")) == [Reason.UNKNOWN_METRIC]


async def test_a_retired_device_is_refused_from_the_next_refresh(registry: Registry) -> None:
    view = await started(registry)
    device = sensor(11)
    assert len(decode(view, [device]).points) == 1
    registry.retire(device.device_id)
    assert await view.refresh()
    assert (view.rows_fetched, view.full_reads) == (FLEET + 1, 1)
    assert reasons(decode(view, [device])) == [Reason.DEVICE_RETIRED]
    assert len(decode(view, [sensor(12)]).points) == 1


async def test_a_new_password_or_a_tenant_change_reads_little_or_nothing(
    registry: Registry,
) -> None:
    view = await started(registry)
    registry.set_password_hash("aq-0003", "$7$new")
    registry.add_tenant(Tenant("GM0599", "Rotterdam"))
    assert await view.refresh()
    assert view.rows_fetched == FLEET + 1
    assert len(decode(view, [sensor(3)]).points) == 1


async def test_a_device_of_another_tenant_added_is_refused_under_the_wrong_tenant(
    registry: Registry,
) -> None:
    view = await started(registry)
    theirs = sensor(FLEET, UTRECHT.code)
    registry.add_device(theirs)
    await view.refresh()
    assert reasons(decode(view, [sensor(FLEET)])) == [Reason.TENANT_MISMATCH]
    assert len(decode(view, [theirs]).points) == 1


async def test_a_restored_or_hand_edited_registry_is_read_whole(registry: Registry) -> None:
    view = await started(registry)
    engine = create_engine(registry.url)
    try:
        # A restored backup: the revision went back.
        with engine.begin() as connection:
            connection.execute(text("UPDATE registry_state SET revision = 1"))
        assert await view.refresh()
        assert (view.rows_fetched, view.full_reads) == (2 * FLEET, 2)
        # A device deleted by hand: the count disagrees after the next change.
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM devices WHERE device_id = 'aq-0005'"))
            connection.execute(text("UPDATE registry_state SET device_count = device_count - 1"))
        registry.add_device(sensor(FLEET))
        assert await view.refresh()
    finally:
        engine.dispose()
    assert view.full_reads == 3
    assert reasons(decode(view, [sensor(5)])) == [Reason.UNKNOWN_DEVICE]
    assert len(decode(view, [sensor(FLEET)]).points) == 1


async def test_decoding_sees_a_change_whole_or_not_at_all(registry: Registry) -> None:
    view = await started(registry)
    view.refresh_s = 0.001
    added = [sensor(FLEET + n) for n in range(25)]
    taken: list[int] = []

    async def keep_decoding() -> None:
        while not taken or taken[-1] < len(added):
            taken.append(len(decode(view, added).points))
            await asyncio.sleep(0)

    watching = asyncio.create_task(view.watch())
    try:
        decoding = asyncio.create_task(keep_decoding())
        await asyncio.to_thread(registry.add_devices, added)  # one transaction
        async with asyncio.timeout(30):
            await decoding
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    assert taken[0] == 0
    assert set(taken) == {0, len(added)}
    assert view.rows_fetched == FLEET + len(added)
