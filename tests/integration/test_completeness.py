"""Completeness on real processes: a sequence with holes, through Mosquitto, two ingest worker
processes and InfluxDB, shows up in the API and on the workers' /metrics within a minute or so.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from api import ApiConfig
from lantaarn.serve import bind_free, serve_api
from simulators.publisher import rfc3339_ms
from tests.ingest.processes import publish_all
from tests.ingest.test_faults import VALUES, private_stack
from timeseries import InfluxConfig

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


def _two_free_ports() -> int:
    """A port p with p + 1 also free (worker N serves /metrics on port + N)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6) as a:
            a.bind(("::1", 0))
            port = int(a.getsockname()[1])
            with socket.socket(socket.AF_INET6) as b:
                try:
                    b.bind(("::1", port + 1))
                except OSError:
                    continue
            return port
    raise OSError("no two free ports in a row")


def _metric(text: str, name: str) -> Counter[str]:
    """Samples of one metric family summed per tenant label."""
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            tenant = dict(p.split("=", 1) for p in labels.split(","))["tenant"].strip('"')
            out[tenant] += int(float(value))
    return out


async def test_holes_in_seq_show_in_the_api_and_on_metrics(tmp_path: Path) -> None:
    metrics_port = _two_free_ports()
    with private_stack(tmp_path, seed=41, metrics_port=metrics_port) as stack:
        stack.env["LANTAARN_INGEST__WORKERS"] = "2"
        for index in (0, 1):
            stack.worker(index).start()
        dev_a, dev_b, dev_c = (device_id for _t, device_id, _k in stack.devices[:3])
        # a: 40 readings, 3 dropped on the way; b: complete, some sent twice (redelivered);
        # c: restarts (seq back to 0) halfway, nothing lost.
        plan = {
            dev_a: [s for s in range(40) if s not in (5, 6, 20)],
            dev_b: [*range(40), 3, 17, 39],
            dev_c: [*range(500, 540), *range(20)],
        }
        owner = {d: (t, k) for t, d, k in stack.devices}
        now_ms = time.time_ns() // 1_000_000
        messages = []
        for device_id, seqs in plan.items():
            tenant, kind = owner[device_id]
            for n, seq in enumerate(seqs):
                payload = {"ts": rfc3339_ms(now_ms + n), "seq": seq, "metrics": VALUES[kind](n)}
                messages.append(
                    (f"lantaarn/v1/{tenant}/{device_id}/telemetry", orjson.dumps(payload))
                )
        await asyncio.to_thread(publish_all, stack.mosquitto.port, messages)
        want = {dev_a: (37, 40), dev_b: (40, 40), dev_c: (60, 60)}
        per_tenant: Counter[str] = Counter()
        for device_id, (received, expected) in want.items():
            per_tenant[owner[device_id][0]] += expected - received

        registry_url = stack.env["LANTAARN_REGISTRY_URL"]
        sockets, port = bind_free(["::1"])
        stop = asyncio.Event()
        config = ApiConfig(registry_url, InfluxConfig(stack.influx.url), anonymous_read=True)
        api = asyncio.create_task(serve_api(config, ["::1"], port, stop, sockets=sockets))
        try:
            async with httpx.AsyncClient(base_url=f"http://[::1]:{port}", timeout=30) as http:
                start = rfc3339_ms(now_ms - 120_000)
                # The minute closes, then 10 s of grace and a rollup tick: about 75 s at most.
                async with asyncio.timeout(150):
                    while True:
                        try:
                            answer = await http.get("/v1/completeness", params={"start": start})
                        except httpx.TransportError:
                            answer = None
                        if answer is not None and answer.status_code == 200:
                            items = answer.json()["items"]
                            if sum(i["expected"] for i in items) >= 140:
                                break
                        await asyncio.sleep(1)
                missing = Counter[str]()
                for item in items:
                    missing[item["tenant"]] += item["missing"]
                assert +missing == +per_tenant
                assert sum(i["received"] for i in items) == 137

                for device_id, (received, expected) in want.items():
                    one = await http.get(
                        f"/v1/devices/{device_id}/completeness",
                        params={"start": start, "interval": "1m"},
                    )
                    assert one.status_code == 200, one.text
                    body = one.json()
                    assert (body["received"], body["expected"]) == (received, expected), device_id
                    assert body["missing"] == expected - received
                    assert sum(i["expected"] for i in body["intervals"]) == expected
                    device = (await http.get(f"/v1/devices/{device_id}")).json()
                    assert device["completeness"]["ratio"] == pytest.approx(received / expected)

                bad = await http.get("/v1/completeness", params={"kind": "toaster"})
                assert bad.status_code == 400
                assert bad.headers["content-type"] == "application/problem+json"

                scraped = [
                    (await http.get(f"http://[::1]:{metrics_port + i}/metrics")).text
                    for i in (0, 1)
                ]
        finally:
            stop.set()
            await api
        missing_metric: Counter[str] = Counter()
        expected_metric: Counter[str] = Counter()
        for text in scraped:
            missing_metric += _metric(text, "lantaarn_completeness_missing_readings_total")
            expected_metric += _metric(text, "lantaarn_completeness_expected_readings_total")
        assert +missing_metric == +per_tenant
        assert sum(expected_metric.values()) == 140
        assert "lantaarn_completeness_ratio{" in "".join(scraped)
        for worker in stack.workers:
            worker.terminate()
