"""`lantaarn demo`: broker, database, one ingest worker, the API and a simulated fleet.

Secured as a deployment is, from the same shipped configuration (deploy/): the broker admits only
logins from the registry (each simulated device logs in as itself, with its own password) and the
ingest service's login; InfluxDB wants a login (ingest writes, the API reads). Every secret is
made once and kept, owner-only, under the data folder (itself 0700), so a second run reuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from broker.acl import Role, ServiceLogin
from broker.config import BrokerTls, stage_tls
from broker.fleet import Connection, Transport
from broker.passwords import write_broker_config
from broker.pki import Authority, AuthorityMissing, device_identity
from broker.secrets import private_folder, write_secret
from broker.tls import client_context
from devices import Device, NotFound, Registry
from devices.alert_rules import BUILTINS, builtin_for
from devices.provisioning import issue_credentials, new_password, provision
from ingest import run_worker
from ingest.metrics import WorkerCollector
from lantaarn.alerts import channels, evaluator
from lantaarn.influx_users import InfluxLogin, ensure_influx_schema, ensure_influx_users
from lantaarn.localstack import LOOPBACKS, LocalStack, Mosquitto, check_port_free
from lantaarn.night_schedule import seed_night_schedules
from lantaarn.serve import serve_api
from lantaarn.settings import MqttSettings, Settings
from simulators import Fleet, SimClock, Simulation, device_connections, make_fleet
from simulators.command_responder import TenantLogin, answer_per_tenant
from simulators.engine import Links
from timeseries import InfluxClient

log = logging.getLogger(__name__)

INGEST_LOGIN = "lantaarn-ingest"
INFLUX_ADMIN = "lantaarn-admin"
INFLUX_WRITER = "lantaarn-ingest"
INFLUX_READER = "lantaarn-api"
# The command service's broker login (operator: writes +/+/cmd, reads the answers).
COMMANDS_LOGIN = "lantaarn-commands"
SECRET_NAMES = (INGEST_LOGIN, "influx-admin", "influx-writer", "influx-reader", COMMANDS_LOGIN)
BROKER_CONFIG_EVERY_S = 5.0


def lamps_login(tenant: str) -> str:
    """The broker login through which a tenant's simulated lamps hear and answer commands."""
    return f"lantaarn-lamps-{tenant.lower()}"


def service_passwords(data_dir: Path, extra: Sequence[str] = ()) -> dict[str, str]:
    """The demo's service passwords: made once, kept (mode 0600) under the data folder."""
    path = data_dir / "service-logins.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    names = (*SECRET_NAMES, *extra)
    if not set(names) <= stored.keys():
        stored = {name: stored.get(name) or new_password() for name in {*stored, *names}}
        write_secret(path, json.dumps(stored))
    return stored


def device_passwords(
    registry: Registry, fleet: Fleet, data_dir: Path
) -> dict[str, tuple[str, str]]:
    """Register the fleet and give every simulated device its own broker login, kept (0600)."""
    path = data_dir / "simulated-devices.json"
    kept: dict[str, list[str]] = json.loads(path.read_text()) if path.exists() else {}
    for tenant in fleet.tenants:
        try:
            registry.tenant(tenant.code)
        except NotFound:
            registry.add_tenant(tenant)
    known = {d.device_id for d in registry.devices()}
    missing = [d for d in fleet.devices if d.device_id not in known]
    issued = {d.device_id: issue_credentials(d) for d in missing}
    if missing:
        hashes = {k: c.password_hash for k, c in issued.items()}
        registry.add_devices(missing, password_hashes=hashes)
        log.info("registered %d simulated devices", len(missing))
    for device in fleet.devices:
        if device.device_id in issued:
            c = issued[device.device_id]
        elif device.device_id not in kept:
            c = provision(registry, device.device_id)  # registered before, password unknown
        else:
            continue
        kept[device.device_id] = [c.username, c.password]
    write_secret(path, json.dumps(kept))
    return {k: (v[0], v[1]) for k, v in kept.items()}


def demo_authority(pki: Path) -> Authority:
    """The demo's certificate authority under the data folder, with a broker certificate."""
    try:
        authority = Authority.load(pki)
    except AuthorityMissing:
        authority = Authority.create(pki, name="lantaarn demo CA")
    if not (pki / "server.crt").exists():
        authority.issue_server(["localhost"], list(LOOPBACKS))
    return authority


def device_certificates(
    authority: Authority, devices: Sequence[Device], data_dir: Path
) -> dict[str, tuple[Path, Path]]:
    """Certificates for every other simulated device (the rest log in with passwords): made
    once by the demo's authority, kept (keys 0600) under the data folder."""
    folder = private_folder(data_dir / "simulated-certificates")
    kept = {}
    for device in devices[1::2]:
        cert, key = folder / f"{device.device_id}.crt", folder / f"{device.device_id}.key"
        if not (cert.exists() and key.exists()):
            cert_pem, key_pem = authority.issue_device(
                device_identity(device.tenant, device.device_id)
            )
            write_secret(key, key_pem)
            write_secret(cert, cert_pem)
        kept[device.device_id] = (cert, key)
    return kept


def run_demo(
    settings: Settings,
    *,
    data_dir: Path,
    api_port: int,
    mqtt_port: int,
    tls_port: int,
    certificate_port: int,
    influx_port: int,
    devices: int,
    interval_s: float,
) -> int:
    """Run everything until Ctrl-C or SIGTERM; stop it all within 10 seconds."""
    check_port_free(api_port, "--api-port", tuple(settings.api.hosts))
    check_port_free(mqtt_port, "--mqtt-port")
    check_port_free(tls_port, "--mqtt-tls-port")
    check_port_free(certificate_port, "--mqtt-certificate-port")
    check_port_free(influx_port, "--influx-port", ("::1",))
    try:
        channels(settings)
    except ValueError as exc:
        print(f"lantaarn demo: {exc}")
        return 2
    private_folder(data_dir)
    fleet = make_fleet(devices, tenants=2, seed=1, interval_s=interval_s)
    tenants = [t.code for t in fleet.tenants]
    secrets = service_passwords(data_dir, [lamps_login(t) for t in tenants])
    settings = settings.model_copy(
        update={
            "data_dir": data_dir,
            "mqtt": MqttSettings(
                host="::1",
                port=mqtt_port,
                username=INGEST_LOGIN,
                password=SecretStr(secrets[INGEST_LOGIN]),
            ),
            "influx": settings.influx.model_copy(
                update={
                    "url": f"http://[::1]:{influx_port}",
                    "username": INFLUX_WRITER,
                    "password": SecretStr(secrets["influx-writer"]),
                    "read_username": INFLUX_READER,
                    "read_password": SecretStr(secrets["influx-reader"]),
                    "admin_username": INFLUX_ADMIN,
                    "admin_password": SecretStr(secrets["influx-admin"]),
                }
            ),
            # The demo's dashboard opens without a key; real deployments keep this off.
            "api": settings.api.model_copy(update={"anonymous_read": True}),
            # Commands and the dimming scheduler run in the API's process.
            "commands": settings.commands.model_copy(
                update={
                    "enabled": True,
                    "username": COMMANDS_LOGIN,
                    "password": SecretStr(secrets[COMMANDS_LOGIN]),
                }
            ),
            "scheduler": settings.scheduler.model_copy(update={"enabled": True}),
        }
    )
    services = [
        ServiceLogin.with_password(INGEST_LOGIN, secrets[INGEST_LOGIN], Role.INGEST),
        ServiceLogin.with_password(COMMANDS_LOGIN, secrets[COMMANDS_LOGIN], Role.OPERATOR),
        # Each tenant's simulated lamps hear their commands through one fleet login of that
        # tenant (a device's own connection is the codec's publisher, which does not subscribe).
        *(
            ServiceLogin.with_password(lamps_login(t), secrets[lamps_login(t)], Role.FLEET, t)
            for t in tenants
        ),
    ]
    folder = data_dir / "mosquitto"
    password_file, acl_file = folder / "passwd", folder / "acl"
    with Registry(settings.registry()) as registry:
        logins = device_passwords(registry, fleet, data_dir)
        write_broker_config(registry, password_file, acl_file, services)
    # Every tenant's lampposts follow the night profile unless it has schedules of its own.
    seed_night_schedules(settings.registry(), tenants)
    # And every tenant has the built-in alert rules switched on (the evaluator runs below).
    with Registry(settings.registry()) as registry:
        seed_alert_rules(registry, tenants)
    certificates = device_certificates(demo_authority(settings.pki_dir()), fleet.devices, data_dir)
    # Devices' TLS listeners on loopback too: the demo is not a deployment to reach from outside.
    tls = stage_tls(
        settings.pki_dir(),
        folder / "tls",
        tls_port=tls_port,
        certificate_port=certificate_port,
        device_addresses=("::1", "127.0.0.1"),
    )
    with LocalStack(
        data_dir, mqtt_port, influx_port, password_file, acl_file, influx_auth=True, tls=tls
    ) as stack:
        ensure_influx_users(
            stack.influx.url,
            settings.influx.database,
            InfluxLogin(INFLUX_ADMIN, secrets["influx-admin"]),
            InfluxLogin(INFLUX_WRITER, secrets["influx-writer"]),
            InfluxLogin(INFLUX_READER, secrets["influx-reader"]),
        )
        asyncio.run(
            ensure_influx_schema(
                stack.influx.url,
                settings.influx.database,
                InfluxLogin(INFLUX_ADMIN, secrets["influx-admin"]),
                settings.retention(),
            )
        )
        # A tenant's lamps hear commands through its fleet login on the plain listener.
        answering = [
            TenantLogin(t, lamps_login(t), lamps_login(t), secrets[lamps_login(t)]) for t in tenants
        ]
        simulator = SimulatedFleet(
            fleet.devices, logins, certificates, tls, answering, answer_port=mqtt_port
        )
        asyncio.run(_run(settings, simulator, api_port, stack.mosquitto, services))
    print("lantaarn demo stopped")
    return 0


async def _run(
    settings: Settings,
    simulator: SimulatedFleet,
    api_port: int,
    broker: Mosquitto,
    services: list[ServiceLogin],
) -> None:
    tls = broker.tls
    assert tls is not None  # the demo always runs its device listeners over TLS
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim_stop = threading.Event()
    simulation = simulator.simulation()
    # The lamps listen before the API's scheduler sends them its first steps.
    for listening in simulator.answer_commands(simulation, sim_stop):
        if not await asyncio.to_thread(listening.wait, 30):
            log.warning("simulated lamps do not hear commands yet; the first ones may expire")
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
            simulating = tasks.create_task(
                asyncio.to_thread(simulator.run, sim_stop, simulation), name="simulator"
            )
            follow = tasks.create_task(
                _follow_registry(registry, broker, services, settings.pki_dir()),
                name="broker-config",
            )
            alerts_stop = asyncio.Event()
            alerting = tasks.create_task(_evaluate(settings, alerts_stop), name="alerts")
            hosts = ", ".join(
                f"http://[{h}]:{api_port}" if ":" in h else f"http://{h}:{api_port}"
                for h in settings.api.hosts
            )
            print(
                f"lantaarn demo is running with {len(simulator.devices)} simulated devices "
                f"({len(simulator.certificates)} with certificates, the rest with passwords)\n"
                f"  dashboard: http://localhost:{api_port}/dashboard\n"
                f"  API:       {hosts} (/v1/devices, /v1/docs)\n"
                f"  MQTT:      devices over TLS on [::1]:{tls.tls_port} with their password, "
                f"[::1]:{tls.certificate_port} with their certificate (CA {tls.ca_file});\n"
                f"             plain [::1]:{settings.mqtt.port} for the platform's own services\n"
                f"  data:      {settings.data_dir}\n"
                "  alerts:    the built-in rules are on for every tenant: GET /v1/alerts\n"
                "  commands:  lampposts obey and follow each tenant's night profile; to dim them\n"
                "             yourself, `lantaarn keys create --role operator` and sign in with\n"
                "             that key under the dashboard's Settings\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            await stop.wait()
            log.info("stopping: simulator, then ingest, then API")
            # Inputs first, outputs last: what was published still gets stored.
            sim_stop.set()
            follow.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(simulating), 3)
            alerts_stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(alerting), 5)
            ingest_stop.set()
            api_stop.set()


def seed_alert_rules(registry: Registry, tenants: Sequence[str]) -> int:
    """Switch every built-in alert rule on for each tenant that has none of it yet; returns
    how many were made (none on a second run)."""
    made = 0
    having = {(r.tenant, r.builtin) for r in registry.rules(tenants=tenants)}
    for tenant in tenants:
        for name in BUILTINS:
            if (tenant, name) not in having:
                rule = builtin_for(name, tenant)
                assert rule is not None
                registry.add_rule(rule)
                made += 1
    if made:
        log.info("switched %d built-in alert rule(s) on", made)
    return made


async def _evaluate(settings: Settings, stop: asyncio.Event) -> None:
    """The alert evaluator (`lantaarn alerts`) with the channels `LANTAARN_ALERTS__*` configure
    (none by default: alerts are then only in the API and on the dashboard)."""
    with Registry(settings.registry()) as registry:
        async with InfluxClient(settings.influx_read_config()) as client:
            evaluating = evaluator(settings, registry, client)
            log.info(
                "alert evaluator: %d platform channel(s), a round every %g s",
                len(evaluating.channels),
                evaluating.config.interval_s,
            )
            await evaluating.run(stop)


async def _follow_registry(
    registry: Registry, broker: Mosquitto, services: list[ServiceLogin], pki: Path
) -> None:
    """Rewrite the broker's logins and ACL when the registry changes, take a new CRL when the
    authority writes one (a device retired or a certificate revoked), and reload the broker."""
    password_file, acl_file = broker.password_file, broker.acl_file
    if password_file is None or acl_file is None:
        return
    seen = await asyncio.to_thread(registry.revision)
    crl = pki / "crl.pem"
    crl_seen = crl.read_bytes()
    while True:
        await asyncio.sleep(BROKER_CONFIG_EVERY_S)
        try:
            now = await asyncio.to_thread(registry.revision)
            crl_now = crl.read_bytes()
            if now == seen and crl_now == crl_seen:
                continue
            if now != seen:
                await asyncio.to_thread(
                    write_broker_config, registry, password_file, acl_file, services
                )
            if broker.tls is not None:
                broker.tls = stage_tls(
                    pki,
                    broker.tls.ca_file.parent,
                    tls_port=broker.tls.tls_port,
                    certificate_port=broker.tls.certificate_port,
                    device_addresses=broker.tls.device_addresses,
                )
            broker.reload()
            seen, crl_seen = now, crl_now
            log.info("broker logins and CRL updated")
        except Exception:
            log.exception("updating the broker's logins failed; trying again")


@dataclass(frozen=True, slots=True)
class SimulatedFleet:
    """The simulated devices and how each proves who it is: its certificate, else its password."""

    devices: Sequence[Device]
    logins: Mapping[str, tuple[str, str]]
    certificates: Mapping[str, tuple[Path, Path]]
    tls: BrokerTls
    answering: Sequence[TenantLogin] = ()
    answer_port: int = 0

    def connections(self) -> list[Connection]:
        """One connection per device, in the fleet's order, over TLS to its listener."""
        host = "::1"  # in the broker's certificate
        by_password = client_context(self.tls.ca_file)
        connections = []
        for device in self.devices:
            cert = self.certificates.get(device.device_id)
            if cert is None:
                connections += device_connections(
                    [device], host, self.tls.tls_port, self.logins, tls=by_password
                )
            else:
                # The certificate's identity is the login; the broker takes it as client id too.
                connections += device_connections(
                    [device],
                    host,
                    self.tls.certificate_port,
                    tls=client_context(self.tls.ca_file, *cert),
                )
        return connections

    def simulation(self) -> Simulation:
        """The simulated devices on a real-time clock."""
        # Every lamp obeys here (the demo's own test expects each scheduled step done); the
        # command faults are for `lantaarn simulate --faults` and the tests.
        return Simulation(self.devices, seed=1, clock=SimClock(time.time()))

    def answer_commands(
        self, simulation: Simulation, stop: threading.Event
    ) -> list[threading.Event]:
        """Let the devices the simulation ticks hear and obey their commands (so their telemetry
        follows), a thread per tenant until `stop`; the events are set once each listens."""
        return answer_per_tenant(simulation.devices, "::1", self.answer_port, stop, self.answering)

    def run(self, stop: threading.Event, simulation: Simulation) -> None:
        """Publish every device's readings at its interval until `stop` is set."""
        transport = Transport()
        connections = self.connections()
        try:
            for connection in connections:
                transport.add(connection)
            transport.wait_connected(connections, 60.0)
            links = Links.own(transport, connections)
            simulation.run(links, stop=stop)
            simulation.finish(links, timeout_s=2.0)
        finally:
            transport.close_all()
