"""What a device is doing now: its status (online, offline, silent), last reading and values."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from api.timefmt import format_ns
from api.timefmt import now_ns as now_ns_clock
from devices import DEVICE_KINDS, BoundingBox, Device, Registry
from devices.registry import DeviceState, ReadingUpdate, StatusUpdate, live_status
from timeseries import InfluxClient, InfluxError
from timeseries.queries import RawReading, last_status, latest_readings
from timeseries.schema import raw_measurement
from timeseries.selection import Selection

if TYPE_CHECKING:  # api.schemas imports this module
    from api.schemas import OpenDataOut

log = logging.getLogger(__name__)

NS = 1_000_000_000
LOOKBACK_NS = 2 * 86400 * NS  # how far back the newest reading is looked for

Status = Literal["online", "offline", "silent"]


@dataclass(frozen=True, slots=True)
class LiveState:
    """A device's status, the time of its newest reading (ns) and that reading's values."""

    status: Status
    last_seen_ns: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def device_status(
    device: Device, last_reading_ns: int | None, status: tuple[int, str] | None, now: int
) -> Status:
    """The status of a device from its newest reading's time and its last status message
    (time, state) as InfluxDB holds them (see devices.registry.live_status)."""
    state = DeviceState(
        last_ns=last_reading_ns,
        status=status[1] if status else None,
        status_ns=status[0] if status else None,
    )
    return live_status(device, state, now)


async def _newest_in_influx(
    influx: InfluxClient, devices: Sequence[Device], now: int, asked: Selection
) -> tuple[dict[str, RawReading], dict[str, tuple[int, str]]]:
    """The newest reading and last status message (time, state) InfluxDB holds of the devices
    `asked` selects, by device id."""
    kinds = sorted({k for d in devices for k in (d.kind, *d.extra_kinds) if k in DEVICE_KINDS})
    return await asyncio.gather(
        latest_readings(influx, [raw_measurement(k) for k in kinds], now - LOOKBACK_NS, asked),
        last_status(influx, now - LOOKBACK_NS, asked),
    )


def _live_of(
    devices: Sequence[Device],
    readings: dict[str, RawReading],
    statuses: dict[str, tuple[int, str]],
    now: int,
) -> dict[str, LiveState]:
    out = {}
    for device in devices:
        reading = readings.get(device.device_id)
        ts = reading.ts_ns if reading else None
        out[device.device_id] = LiveState(
            device_status(device, ts, statuses.get(device.device_id), now),
            ts,
            reading.metrics if reading else {},
        )
    return out


async def live_states(
    influx: InfluxClient, devices: Sequence[Device], now: int, asked: Selection
) -> dict[str, LiveState]:
    """The live state of each device. `asked` says which devices InfluxDB is asked about: these
    devices by id (for a page), or every device of their tenants (for a whole fleet, a short
    query however many devices it holds); it must include `devices`."""
    readings, statuses = await _newest_in_influx(influx, devices, now, asked)
    return _live_of(devices, readings, statuses, now)


async def live_states_if_available(
    influx: InfluxClient, devices: Sequence[Device], now: int
) -> dict[str, LiveState]:
    """Like live_states for a page of devices, but empty while InfluxDB does not answer:
    the registry stays readable when the time-series store is down."""
    try:
        return await live_states(
            influx, devices, now, Selection.of_devices(d.device_id for d in devices)
        )
    except InfluxError as exc:
        log.warning("devices answered without live state: %s", exc)
        return {}


def latest_item(
    device: Device, state: LiveState, open_data: OpenDataOut | None = None
) -> dict[str, Any]:
    """A device and its live state as an item of /v1/latest (the JSON of api.schemas.LatestOut,
    built directly: a page holds thousands)."""
    return {
        "deviceId": device.device_id,
        "tenant": device.tenant,
        "kind": device.kind,
        "name": device.name,
        "location": {"type": "Point", "coordinates": [device.longitude, device.latitude]},
        "status": state.status,
        "ts": format_ns(state.last_seen_ns) if state.last_seen_ns is not None else None,
        "metrics": state.metrics,
        "openData": open_data.model_dump(mode="json") if open_data is not None else None,
    }


# A page missing more devices than this asks InfluxDB about their whole tenants (one short
# query per kind) rather than about each device by id.
_BY_TENANT_ABOVE = 200


async def page_states(
    registry: Registry,
    influx: InfluxClient,
    *,
    tenants: Sequence[str] | None,
    kind: str | None,
    after: str | None,
    limit: int,
    admit: Callable[[Device], bool] | None = None,
    bbox: BoundingBox | None = None,
) -> tuple[list[tuple[Device, LiveState]], str | None]:
    """A page of active devices in id order after `after`, each with its live state, from the
    device-state store; and the id to continue after (None on the last page).

    `admit` keeps only some devices (open data); the page is then filled from further rows.
    Devices the store has no state of (none of their readings passed a worker since the store
    exists) are looked up in InfluxDB, for this page only.
    """
    now = now_ns_clock()
    chosen: list[tuple[Device, DeviceState | None]] = []
    cursor = after
    exhausted = False
    # One more than the page, to know whether another follows.
    while len(chosen) <= limit and not exhausted:
        rows = await asyncio.to_thread(
            registry.latest_page,
            tenants=tenants,
            kind=kind,
            after=cursor,
            bbox=bbox,
            limit=limit + 1,
        )
        exhausted = len(rows) <= limit
        for device, state in rows:
            cursor = device.device_id
            if admit is None or admit(device):
                chosen.append((device, state))
                if len(chosen) > limit:
                    break
    more = len(chosen) > limit
    page = chosen[:limit]
    missing = [device for device, state in page if state is None or state.last_ns is None]
    found: dict[str, LiveState] = {}
    if missing:
        found = await _from_influx(registry, influx, missing, now)
    out = []
    for device, state in page:
        live = found.get(device.device_id)
        if live is None or (state is not None and state.last_ns is not None):
            live = LiveState(
                live_status(device, state, now),
                state.last_ns if state is not None else None,
                dict(state.metrics or {}) if state is not None else {},
            )
        out.append((device, live))
    following = page[-1][0].device_id if more else None
    return out, following


async def _from_influx(
    registry: Registry, influx: InfluxClient, devices: list[Device], now: int
) -> dict[str, LiveState]:
    """The live state of devices the store does not know, from InfluxDB (502 when it fails:
    saying "never seen" of devices that may well report would mislead).

    What InfluxDB had is written to the store (an upsert that keeps the newer, as the workers'),
    so that after the store started empty (a new or restored database) each device is looked up
    in InfluxDB once, not on every page until it reports again.
    """
    if len(devices) > _BY_TENANT_ABOVE:
        asked = Selection.of_tenants(sorted({d.tenant for d in devices}))
    else:
        asked = Selection.of_devices(d.device_id for d in devices)
    readings, statuses = await _newest_in_influx(influx, devices, now, asked)
    known = []
    told = []
    for device in devices:
        reading = readings.get(device.device_id)
        if reading is not None:
            known.append(
                ReadingUpdate(device.device_id, device.tenant, reading.ts_ns, reading.metrics)
            )
        status = statuses.get(device.device_id)
        if status is not None:
            told.append(StatusUpdate(device.device_id, device.tenant, status[1], status[0]))
    if known or told:
        try:
            await asyncio.to_thread(registry.record_states, known, told, now_ns=now)
        except Exception as exc:  # noqa: BLE001 - the answer does not depend on it
            log.warning("could not keep the device state found in InfluxDB: %s", exc)
    return _live_of(devices, readings, statuses, now)
