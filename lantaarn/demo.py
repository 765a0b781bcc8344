"""`lantaarn demo`: broker, database, one ingest worker, the API and a simulated fleet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from devices import Device, Registry
from ingest import run_worker
from lantaarn.localstack import LocalStack, check_port_free
from lantaarn.seed import register_fleet
from lantaarn.serve import serve_api
from lantaarn.settings import MqttSettings, Settings
from simulators import Publisher, make_fleet, run_fleet

log = logging.getLogger(__name__)

STOP_WITHIN_S = 10.0


def run_demo(
    settings: Settings,
    *,
    data_dir: Path,
    api_port: int,
    mqtt_port: int,
    influx_port: int,
    devices: int,
    interval_s: float,
) -> int:
    """Run everything until Ctrl-C or SIGTERM; stop it all within 10 seconds."""
    check_port_free(api_port, "--api-port", tuple(settings.api.hosts))
    check_port_free(mqtt_port, "--mqtt-port")
    check_port_free(influx_port, "--influx-port", ("::1",))
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(
        update={
            "data_dir": data_dir,
            "mqtt": MqttSettings(host="::1", port=mqtt_port),
            "influx": settings.influx.model_copy(update={"url": f"http://[::1]:{influx_port}"}),
            # The demo's dashboard opens without a key; real deployments keep this off.
            "api": settings.api.model_copy(update={"anonymous_read": True}),
        }
    )
    fleet = make_fleet(devices, tenants=2, seed=1, interval_s=interval_s)
    with Registry(settings.registry()) as registry:
        added = register_fleet(registry, fleet)
        if added:
            log.info("registered %d simulated devices", added)
    with LocalStack(data_dir, mqtt_port, influx_port):
        asyncio.run(_run(settings, fleet.devices, api_port))
    print("lantaarn demo stopped")
    return 0


async def _run(settings: Settings, devices: Sequence[Device], api_port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim_stop = threading.Event()
    with Registry(settings.registry()) as registry:
        ingest_stop = asyncio.Event()
        api_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                run_worker(
                    settings.worker(0),
                    settings.broker(),
                    settings.influx_config(),
                    registry,
                    settings.retention(),
                    ingest_stop,
                ),
                name="ingest-0",
            )
            tasks.create_task(
                serve_api(settings.api_config(), settings.api.hosts, api_port, api_stop), name="api"
            )
            simulation = tasks.create_task(
                asyncio.to_thread(_simulate, settings, devices, sim_stop), name="simulator"
            )
            hosts = ", ".join(
                f"http://[{h}]:{api_port}" if ":" in h else f"http://{h}:{api_port}"
                for h in settings.api.hosts
            )
            print(
                f"lantaarn demo is running with {len(devices)} simulated devices\n"
                f"  dashboard: http://localhost:{api_port}/dashboard\n"
                f"  API:       {hosts} (/v1/devices, /v1/docs)\n"
                f"  MQTT:      [::1]:{settings.mqtt.port} and 127.0.0.1:{settings.mqtt.port}\n"
                f"  data:      {settings.data_dir}\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            await stop.wait()
            log.info("stopping: simulator, then ingest, then API")
            # Inputs first, outputs last: what was published still gets stored.
            sim_stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(simulation), 3)
            ingest_stop.set()
            api_stop.set()


def _simulate(settings: Settings, devices: Sequence[Device], stop: threading.Event) -> None:
    with Publisher(settings.broker_address(), "demo-simulator") as publisher:
        run_fleet(devices, publisher, seed=1, stop=stop)
        publisher.flush(2)
