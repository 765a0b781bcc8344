"""`lantaarn demo`: broker, database, one ingest worker, the API and a simulated fleet.

Authentication is on, as in a real deployment: the broker admits only logins from the registry
(devices) and two service logins of the demo (ingest reads, the simulator publishes for its
fleet), whose passwords are kept under the data folder so a second run reuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr

from devices import Device, Registry
from devices.provisioning import Role, ServiceLogin, new_password, write_broker_config
from ingest import run_worker
from ingest.metrics import WorkerCollector
from lantaarn.localstack import LocalStack, Mosquitto, check_port_free
from lantaarn.seed import register_fleet
from lantaarn.serve import serve_api
from lantaarn.settings import MqttSettings, Settings
from simulators import BrokerAddress, Publisher, make_fleet, run_fleet

log = logging.getLogger(__name__)

INGEST_LOGIN = "lantaarn-ingest"
SIMULATOR_LOGIN = "lantaarn-simulator"
BROKER_CONFIG_EVERY_S = 5.0


def service_passwords(data_dir: Path) -> dict[str, str]:
    """The demo's service passwords: made once, kept (mode 0600) under the data folder."""
    path = data_dir / "service-logins.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        if {INGEST_LOGIN, SIMULATOR_LOGIN} <= stored.keys():
            return stored
    passwords = {INGEST_LOGIN: new_password(), SIMULATOR_LOGIN: new_password()}
    path.touch(mode=0o600)
    path.write_text(json.dumps(passwords))
    return passwords


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
    passwords = service_passwords(data_dir)
    settings = settings.model_copy(
        update={
            "data_dir": data_dir,
            "mqtt": MqttSettings(
                host="::1",
                port=mqtt_port,
                username=INGEST_LOGIN,
                password=SecretStr(passwords[INGEST_LOGIN]),
            ),
            "influx": settings.influx.model_copy(update={"url": f"http://[::1]:{influx_port}"}),
            # The demo's dashboard opens without a key; real deployments keep this off.
            "api": settings.api.model_copy(update={"anonymous_read": True}),
        }
    )
    services = [
        ServiceLogin.with_password(INGEST_LOGIN, passwords[INGEST_LOGIN], Role.INGEST),
        ServiceLogin.with_password(SIMULATOR_LOGIN, passwords[SIMULATOR_LOGIN], Role.FLEET),
    ]
    folder = data_dir / "mosquitto"
    password_file, acl_file = folder / "passwd", folder / "acl"
    fleet = make_fleet(devices, tenants=2, seed=1, interval_s=interval_s)
    with Registry(settings.registry()) as registry:
        added = register_fleet(registry, fleet)
        if added:
            log.info("registered %d simulated devices", added)
        write_broker_config(registry, password_file, acl_file, services)
    simulator = BrokerAddress("::1", mqtt_port, SIMULATOR_LOGIN, passwords[SIMULATOR_LOGIN])
    with LocalStack(data_dir, mqtt_port, influx_port, password_file, acl_file) as stack:
        asyncio.run(_run(settings, fleet.devices, api_port, simulator, stack.mosquitto, services))
    print("lantaarn demo stopped")
    return 0


async def _run(
    settings: Settings,
    devices: Sequence[Device],
    api_port: int,
    simulator: BrokerAddress,
    broker: Mosquitto,
    services: list[ServiceLogin],
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim_stop = threading.Event()
    ingest_metrics = WorkerCollector()  # the worker's counters on the API's /metrics
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
                    observe=ingest_metrics.add,
                ),
                name="ingest-0",
            )
            tasks.create_task(
                serve_api(
                    settings.api_config(collectors=(ingest_metrics,)),
                    settings.api.hosts,
                    api_port,
                    api_stop,
                ),
                name="api",
            )
            simulation = tasks.create_task(
                asyncio.to_thread(_simulate, simulator, devices, sim_stop), name="simulator"
            )
            follow = tasks.create_task(
                _follow_registry(registry, broker, services), name="broker-config"
            )
            hosts = ", ".join(
                f"http://[{h}]:{api_port}" if ":" in h else f"http://{h}:{api_port}"
                for h in settings.api.hosts
            )
            print(
                f"lantaarn demo is running with {len(devices)} simulated devices\n"
                f"  dashboard: http://localhost:{api_port}/dashboard\n"
                f"  API:       {hosts} (/v1/devices, /v1/docs)\n"
                f"  MQTT:      [::1]:{settings.mqtt.port} and 127.0.0.1:{settings.mqtt.port}"
                " (devices log in with the login the API gave them)\n"
                f"  data:      {settings.data_dir}\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            await stop.wait()
            log.info("stopping: simulator, then ingest, then API")
            # Inputs first, outputs last: what was published still gets stored.
            sim_stop.set()
            follow.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(simulation), 3)
            ingest_stop.set()
            api_stop.set()


async def _follow_registry(
    registry: Registry, broker: Mosquitto, services: list[ServiceLogin]
) -> None:
    """Rewrite the broker's logins and ACL when the registry changes, and reload the broker."""
    password_file, acl_file = broker.password_file, broker.acl_file
    if password_file is None or acl_file is None:
        return
    seen = await asyncio.to_thread(registry.revision)
    while True:
        await asyncio.sleep(BROKER_CONFIG_EVERY_S)
        try:
            now = await asyncio.to_thread(registry.revision)
            if now != seen:
                await asyncio.to_thread(
                    write_broker_config, registry, password_file, acl_file, services
                )
                broker.reload()
                seen = now
                log.info("broker logins updated from the registry")
        except Exception:
            log.exception("updating the broker's logins failed; trying again")


def _simulate(address: BrokerAddress, devices: Sequence[Device], stop: threading.Event) -> None:
    with Publisher(address, "demo-simulator") as publisher:
        run_fleet(devices, publisher, seed=1, stop=stop)
        publisher.flush(2)
