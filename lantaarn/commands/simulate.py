"""`lantaarn simulate`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings

log = logging.getLogger(__name__)


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `simulate`."""
    del settings
    sim = commands.add_parser("simulate", help="publish a simulated fleet's telemetry")
    sim.add_argument("--devices", type=int, default=100)
    sim.add_argument("--tenants", type=int, default=2)
    sim.add_argument("--seed", type=int, default=1)
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
        "--register",
        action="store_true",
        help="add the fleet's tenants and devices to the registry first",
    )
    sim.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Publish until the duration is over or we are stopped."""
    from devices import Registry  # noqa: PLC0415
    from lantaarn.seed import register_fleet  # noqa: PLC0415
    from simulators import Publisher, make_fleet, run_fleet  # noqa: PLC0415

    fleet = make_fleet(args.devices, tenants=args.tenants, seed=args.seed, interval_s=args.interval)
    if args.register:
        with Registry(settings.registry()) as registry:
            added = register_fleet(registry, fleet)
        log.info("registered %d new devices", added)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Publisher(settings.broker_address(), f"simulator-{args.seed}") as publisher:
        sent = run_fleet(
            fleet.devices, publisher, seed=args.seed, duration_s=args.duration, stop=stop
        )
        publisher.flush()
    print(f"published {sent} readings from {len(fleet.devices)} devices")  # noqa: T201
    return 0
