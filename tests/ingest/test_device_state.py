"""The worker records each device's newest reading and last will in the registry's state store.

In-memory: the recorder keeps the newest point per device between flushes and keeps what a
failed flush could not write. Real: workers on a real Mosquitto and InfluxDB fill the store,
which /v1/latest and /v1/summary then answer from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import orjson
import pytest

from devices import Registry
from devices.registry import ReadingUpdate, StatusUpdate
from ingest.decode import Rejection
from ingest.device_state import StateRecorder
from ingest.reasons import Reason
from lantaarn.localstack import Influx, Mosquitto
from simulators import BrokerAddress, Publisher, make_fleet
from simulators.publisher import rfc3339_ms
from tests.platform import running_platform
from timeseries.lineprotocol import Point, tags
from timeseries.schema import DEVICE_STATUS, raw_measurement

pytestmark = pytest.mark.anyio
NS = 1_000_000_000


class FlakyRegistry:
    """Takes what the recorder writes; refuses while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.readings: dict[str, ReadingUpdate] = {}
        self.statuses: list[StatusUpdate] = []
        self.minutes: dict[tuple[str, int], tuple[int, int]] = {}

    def record_states(
        self,
        readings: Sequence[ReadingUpdate],
        statuses: Sequence[StatusUpdate] = (),
        minutes: Mapping[tuple[str, int], tuple[int, int]] | None = None,
        *,
        now_ns: int,
    ) -> None:
        if self.down:
            raise ConnectionError("database away")
        self.readings.update((r.device_id, r) for r in readings)
        self.statuses.extend(statuses)
        for key, (n, r) in (minutes or {}).items():
            old = self.minutes.get(key, (0, 0))
            self.minutes[key] = (old[0] + n, old[1] + r)

    def forget_minutes(self, before_ns: int) -> None:
        pass


def _point(device: str, at: int, **fields: float | int | bool) -> Point:
    return Point(
        raw_measurement("air_quality"), tags(tenant="GM0363", device_id=device), fields, at
    )


async def test_the_newest_point_per_device_is_written_and_kept_through_a_failure() -> None:
    store = FlakyRegistry()
    recorder = StateRecorder(store, clock=lambda: 1_800_000_000 * NS)  # type: ignore[arg-type]
    recorder.note(
        [
            _point("a", 20 * NS, pm25=2.0, seq=2),
            _point("a", 10 * NS, pm25=1.0, seq=1),  # older, from a redelivery
            _point("b", 5 * NS, pm25=5.0, ts_assigned=True),
        ],
        rejections=[Rejection(Reason.OUT_OF_RANGE, "t", "x", 0, "GM0363", "a", count=3)],
    )
    store.down = True
    await recorder.flush()
    assert recorder.failures == 1
    assert recorder.pending == 2
    store.down = False
    recorder.note(
        [_point("a", 15 * NS, pm25=1.5)],  # older than what the failed flush held
        [Point(DEVICE_STATUS, tags(tenant="GM0363", device_id="b"), {"state": "offline"}, NS)],
    )
    await recorder.flush()
    assert recorder.pending == 0
    assert store.readings["a"] == ReadingUpdate("a", "GM0363", 20 * NS, {"pm25": 2.0})
    assert store.readings["b"] == ReadingUpdate("b", "GM0363", 5 * NS, {"pm25": 5.0})
    assert store.statuses == [StatusUpdate("b", "GM0363", "offline", NS)]
    # Every point counts as a reading of its tenant; rejected values as rejections.
    assert list(store.minutes.values()) == [(4, 3)]


async def test_a_flush_writes_every_numeric_field_but_the_bookkeeping_as_floats() -> None:
    # The flush keeps the decoder's float values in one pass and falls back to the general
    # rule when anything else is there: both must give the same metrics.
    store = FlakyRegistry()
    recorder = StateRecorder(store, clock=lambda: 1_800_000_000 * NS)  # type: ignore[arg-type]
    cases: dict[str, dict[str, float | int | bool | str]] = {
        "floats": {"pm25": 2.0, "pm10": 3.5, "seq": 7},
        "assigned": {"pm25": 2.0, "ts_assigned": True},
        "int": {"pm25": 2, "pm10": 3.5, "seq": 7},
        "bool": {"pm25": 2.0, "door": True, "seq": 7},
        "float seq": {"pm25": 2.0, "seq": 7.0},
        "text": {"pm25": 2.0, "note": "x", "ts_assigned": True},
        "float seq and text": {"pm25": 2.0, "seq": 7.0, "note": "x"},
        "nothing numeric": {"seq": 1, "note": "x"},
    }
    recorder.note(
        [
            Point(raw_measurement("air_quality"), tags(tenant="GM0363", device_id=d), f, NS)
            for d, f in cases.items()
        ]
    )
    await recorder.flush()
    written = {d: dict(store.readings[d].metrics) for d in cases}
    assert written == {
        "floats": {"pm25": 2.0, "pm10": 3.5},
        "assigned": {"pm25": 2.0},
        "int": {"pm25": 2.0, "pm10": 3.5},
        "bool": {"pm25": 2.0, "door": 1.0},
        "float seq": {"pm25": 2.0},
        "text": {"pm25": 2.0},
        "float seq and text": {"pm25": 2.0},
        "nothing numeric": {},
    }
    assert all(type(v) is float for m in written.values() for v in m.values())


async def test_workers_fill_the_store_that_latest_and_summary_answer_from(
    mosquitto: Mosquitto, influx: Influx, tmp_path: Path
) -> None:
    fleet = make_fleet(8, tenants=2, seed=5)
    reporting = next(d for d in fleet.devices if d.kind == "air_quality")
    leaving = next(d for d in fleet.devices if d.tenant == reporting.tenant and d != reporting)
    other = next(d for d in fleet.devices if d.tenant != reporting.tenant)
    now_ms = time.time_ns() // 1_000_000
    async with running_platform(mosquitto, influx, tmp_path, fleet=fleet, workers=2) as platform:
        with Publisher(BrokerAddress("::1", mosquitto.port), f"p-{platform.group}") as publisher:
            for n in range(10):  # spread over both workers, newest last
                payload = {"ts": rfc3339_ms(now_ms - (10 - n) * 1000), "metrics": {"pm25": n}}
                publisher.publish(
                    f"lantaarn/v1/{reporting.tenant}/{reporting.device_id}/telemetry",
                    orjson.dumps(payload),
                )
            publisher.publish(
                f"lantaarn/v1/{leaving.tenant}/{leaving.device_id}/status", b"offline"
            )
            # A status message on another tenant's topic changes nothing.
            publisher.publish(
                f"lantaarn/v1/{other.tenant}/{reporting.device_id}/status", b"offline"
            )
            assert publisher.flush(30)
        registry: Registry = platform.registry
        async with asyncio.timeout(20):
            while True:
                states = await asyncio.to_thread(
                    registry.device_states, [reporting.device_id, leaving.device_id]
                )
                done = states.get(reporting.device_id)
                if done and done.metrics == {"pm25": 9.0} and leaving.device_id in states:
                    break
                await asyncio.sleep(0.2)
        assert states[reporting.device_id].status is None
        assert states[leaving.device_id].status == "offline"
        http: httpx.AsyncClient = platform.http
        latest = (await http.get("/v1/latest", params={"tenant": reporting.tenant})).json()
        by_id = {item["deviceId"]: item for item in latest}
        assert by_id[reporting.device_id]["metrics"] == {"pm25": 9.0}
        assert by_id[reporting.device_id]["status"] == "online"
        assert by_id[leaving.device_id]["status"] == "offline"
        summary = (await http.get("/v1/summary", params={"tenant": reporting.tenant})).json()
        assert summary["devices"]["offline"] == 1
        assert summary["devices"]["online"] == 1
        assert sum(m["readings"] for m in summary["perMinute"]) == 10
        theirs = (await http.get("/v1/summary", params={"tenant": other.tenant})).json()
        assert sum(m["readings"] for m in theirs["perMinute"]) == 0
        assert theirs["devices"]["offline"] == 0
