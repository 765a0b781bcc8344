"""What a device is doing now: its status (online, offline, silent), last reading and values."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from devices import DEVICE_KINDS, Device
from timeseries import InfluxClient, InfluxError
from timeseries.queries import last_status, latest_readings
from timeseries.schema import raw_measurement
from timeseries.selection import Selection

log = logging.getLogger(__name__)

NS = 1_000_000_000
LOOKBACK_NS = 2 * 86400 * NS  # how far back the newest reading is looked for
SILENT_AFTER_INTERVALS = 3

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
    """offline (its last will said so after its last reading), silent (no reading for three
    reporting intervals), else online."""
    if (
        status is not None
        and status[1] == "offline"
        and (last_reading_ns is None or status[0] >= last_reading_ns)
    ):
        return "offline"
    interval = device.interval_s or DEVICE_KINDS[device.kind].interval_s
    if last_reading_ns is None or now - last_reading_ns > SILENT_AFTER_INTERVALS * interval * NS:
        return "silent"
    return "online"


async def live_states(
    influx: InfluxClient, devices: Sequence[Device], now: int, asked: Selection
) -> dict[str, LiveState]:
    """The live state of each device. `asked` says which devices InfluxDB is asked about: these
    devices by id (for a page), or every device of their tenants (for a whole fleet, a short
    query however many devices it holds); it must include `devices`."""
    kinds = sorted({k for d in devices for k in (d.kind, *d.extra_kinds) if k in DEVICE_KINDS})
    readings, statuses = await asyncio.gather(
        latest_readings(influx, [raw_measurement(k) for k in kinds], now - LOOKBACK_NS, asked),
        last_status(influx, now - LOOKBACK_NS, asked),
    )
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
