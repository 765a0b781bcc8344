"""`lantaarn simulate`: a simulated fleet publishing to the broker and answering its commands,
with faults on request."""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lantaarn.commands import Subcommands, hostport
from lantaarn.settings import Settings

if TYPE_CHECKING:
    from simulators.command_responder import TenantLogin

log = logging.getLogger(__name__)

_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def span_s(text: str) -> float:
    """Seconds in a span such as `90s`, `6h`, `7d`."""
    match = _SPAN.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a span like 30m, 6h or 7d")
    return float(match[1]) * _UNIT_S[match[2]]


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `simulate`."""
    sim = commands.add_parser(
        "simulate",
        help="publish a simulated fleet's telemetry",
        description="Publish a simulated city fleet's telemetry over MQTT 5 (QoS 1). "
        "Readings carry simulated timestamps; with --history or --rate the clock runs faster "
        "than real time over the past, then follows real time.",
    )
    sim.add_argument("--devices", type=int, default=100, help="fleet size (default 100)")
    sim.add_argument("--tenants", type=int, default=2, help="municipalities, 1..4 (default 2)")
    sim.add_argument("--seed", type=int, default=1, help="same seed, same fleet and readings")
    sim.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between readings (default: each kind's own interval)",
    )
    sim.add_argument(
        "--duration", type=float, default=None, help="seconds to run (default: until stopped)"
    )
    sim.add_argument(
        "--rate",
        type=float,
        default=None,
        help="messages/s to aim for; speeds the clock up accordingly (needs --duration)",
    )
    sim.add_argument("--speed", type=float, default=None, help="simulated seconds per real second")
    sim.add_argument(
        "--history",
        type=span_s,
        default=None,
        help="start this far in the past (e.g. 7d) and run fast until caught up",
    )
    sim.add_argument(
        "--faults",
        default="none",
        help="fault rates: a total such as 0.05 spread over all faults, or named rates such "
        "as malformed_json=0.01,out_of_range=0.02,flap=0.001; the street fault modes "
        "(pollution_episode, loud_street, flooded, day_burner, dark: shares of the devices of "
        "their kind) are named only (default none)",
    )
    sim.add_argument(
        "--connections",
        type=int,
        default=1,
        help="connections the devices share on an anonymous broker (default 1)",
    )
    sim.add_argument(
        "--credentials",
        type=Path,
        default=None,
        help="JSON file {deviceId: [username, password]}: one connection per device, "
        "logging in as itself, with its last will",
    )
    sim.add_argument("--host", default=settings.mqtt.host, help="broker (default from settings)")
    sim.add_argument("--port", type=int, default=settings.mqtt.port, help="broker port")
    sim.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=settings.mqtt.tls,
        help="connect over TLS (default from settings: LANTAARN_MQTT__TLS)",
    )
    sim.add_argument(
        "--ca-file",
        type=Path,
        default=settings.mqtt.ca_file,
        help="CA certificate (PEM) that signed the broker's certificate",
    )
    sim.add_argument(
        "--cert-file", type=Path, default=settings.mqtt.cert_file, help="client certificate (PEM)"
    )
    sim.add_argument("--key-file", type=Path, default=settings.mqtt.key_file, help="its key (PEM)")
    sim.add_argument(
        "--answer-commands",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the devices hear, obey and answer their commands, a connection per tenant "
        "(default: yes); command faults in --faults make some refuse, never answer, or "
        "come and go",
    )
    sim.add_argument(
        "--command-logins",
        type=Path,
        default=None,
        help="JSON file {tenant: [username, password]}: the fleet login through which each "
        "tenant's devices hear commands (default: the settings' MQTT login, or none)",
    )
    sim.add_argument(
        "--register",
        action="store_true",
        help="add the fleet's tenants and devices to the registry first",
    )
    sim.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Publish until the duration is over or we are stopped."""
    from broker import Connection, Login, Transport, client_context  # noqa: PLC0415
    from devices import Registry  # noqa: PLC0415
    from lantaarn.seed import register_fleet  # noqa: PLC0415
    from simulators import (  # noqa: PLC0415
        FaultRates,
        Links,
        SimClock,
        Simulation,
        device_connections,
        make_fleet,
    )
    from simulators.command_responder import answer_per_tenant  # noqa: PLC0415
    from simulators.engine import natural_rate  # noqa: PLC0415

    fleet = make_fleet(args.devices, tenants=args.tenants, seed=args.seed, interval_s=args.interval)
    faults = FaultRates.parse(args.faults)
    if args.register:
        with Registry(settings.registry()) as registry:
            added = register_fleet(registry, fleet)
        log.info("registered %d new devices", added)
    now = time.time()
    if args.rate is not None:
        if args.duration is None:
            raise SystemExit("lantaarn simulate: --rate needs --duration")
        speed = max(1.0, args.rate / natural_rate(fleet.devices))
        clock = SimClock.history(speed * args.duration, args.duration)
    elif args.history is not None:
        clock = SimClock(now - args.history, args.speed or max(1.0, args.history / 60.0))
    else:
        clock = SimClock(now, args.speed or 1.0)
    simulation = Simulation(fleet.devices, seed=args.seed, clock=clock, faults=faults)
    tls = client_context(args.ca_file, args.cert_file, args.key_file) if args.tls else None
    transport = Transport()
    if args.credentials is not None:
        credentials = {
            device_id: (pair[0], pair[1])
            for device_id, pair in json.loads(args.credentials.read_text()).items()
        }
        connections = device_connections(fleet.devices, args.host, args.port, credentials, tls=tls)
        for connection in connections:
            transport.add(connection)
        transport.wait_connected(connections, 60.0)
        links = Links.own(transport, connections)
    else:
        username = settings.mqtt.username
        password = settings.mqtt.password.get_secret_value() if settings.mqtt.password else None
        connections = [
            Connection(
                args.host,
                args.port,
                Login(f"simulator-{args.seed}-{n}", username, password),
                tls=tls,
            )
            for n in range(max(1, args.connections))
        ]
        for connection in connections:
            transport.add(connection)
        transport.wait_connected(connections)
        links = Links.shared(transport, connections, len(fleet.devices))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    answering = threading.Event()
    if args.answer_commands and args.credentials is not None and args.command_logins is None:
        # Each device's own login is taken by its telemetry connection (the broker binds
        # client ids to logins), so commands need a fleet login per tenant.
        log.warning("no --command-logins for devices with their own logins: commands go unanswered")
    elif args.answer_commands:
        logins = _command_logins(settings, args, [t.code for t in fleet.tenants])
        listening = answer_per_tenant(
            simulation.devices, args.host, args.port, answering, logins, tls=tls
        )
        for ready in listening:
            if not ready.wait(30.0):
                log.warning("the devices do not hear commands yet; the first ones may expire")
    print(  # noqa: T201 - the command's own output
        f"simulating {len(fleet.devices)} devices of {len(fleet.tenants)} tenants to "
        f"{hostport(args.host, args.port)}, clock {clock.speed:.0f}x from "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(clock.start))}Z",
        flush=True,
    )
    try:
        report = simulation.run(links, duration_s=args.duration, stop=stop)
        acknowledged = simulation.finish(links, timeout_s=30.0)
    finally:
        answering.set()
        transport.close_all()
    print(  # noqa: T201 - the command's own output
        f"published {report.messages} messages ({report.readings} readings) from "
        f"{len(fleet.devices)} devices in {report.elapsed_s:.1f} s: {report.rate:.0f} messages/s; "
        f"behind schedule {report.lag_s:.0f} s (simulated); "
        f"{'all acknowledged' if acknowledged else f'{report.unacknowledged} unacknowledged'}"
    )
    return 0 if acknowledged else 1


def _command_logins(
    settings: Settings, args: argparse.Namespace, tenants: Sequence[str]
) -> list[TenantLogin]:
    """Each tenant's command login: from --command-logins (the login is its client id too, as
    the broker binds them), else the settings' login under a client id of the simulator's."""
    from simulators.command_responder import TenantLogin  # noqa: PLC0415

    if args.command_logins is not None:
        given = json.loads(args.command_logins.read_text())
        return [
            TenantLogin(tenant, pair[0], pair[0], pair[1])
            for tenant, pair in given.items()
            if tenant in tenants
        ]
    password = settings.mqtt.password.get_secret_value() if settings.mqtt.password else None
    return [
        TenantLogin(
            tenant, f"simulator-{args.seed}-commands-{tenant}", settings.mqtt.username, password
        )
        for tenant in tenants
    ]
