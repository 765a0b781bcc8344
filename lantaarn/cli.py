"""The `lantaarn` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from lantaarn.settings import Settings

log = logging.getLogger("lantaarn")


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from devices import Registry  # noqa: PLC0415 - each command imports what it runs
    from ingest import run_worker  # noqa: PLC0415

    if args.workers > 1 and args.index is None:
        return _spawn_workers(args.workers)

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        with Registry(settings.registry()) as registry:
            await run_worker(
                settings.worker(args.index or 0),
                settings.broker(),
                settings.influx_config(),
                registry,
                settings.retention(),
                stop,
            )

    asyncio.run(main())
    return 0


def _spawn_workers(count: int) -> int:
    import subprocess  # noqa: PLC0415

    argv = [sys.executable, "-m", "lantaarn", "ingest", "--index"]
    children = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [
                *argv,
                str(i),
            ]
        )
        for i in range(count)
    ]

    def forward(sig: int, _frame: object) -> None:
        for child in children:
            child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes)


def _cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from lantaarn.serve import serve_api  # noqa: PLC0415

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        hosts = args.host or settings.api.hosts
        log.info("API on %s", ", ".join(f"http://{_hostport(h, args.port)}" for h in hosts))
        await serve_api(settings.api_config(), hosts, args.port, stop)

    asyncio.run(main())
    return 0


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
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
    print(f"published {sent} readings from {len(fleet.devices)} devices")
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from lantaarn.demo import run_demo  # noqa: PLC0415

    return run_demo(
        settings,
        data_dir=args.data_dir,
        api_port=args.api_port,
        mqtt_port=args.mqtt_port,
        influx_port=args.influx_port,
        devices=args.devices,
        interval_s=args.interval,
    )


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="lantaarn",
        description=(
            "Telemetry of sensors and smart lampposts in public space. Settings come from "
            "LANTAARN_* environment variables; see the README."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the whole platform locally with a simulated fleet")
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=settings.data_dir,
        help="where broker, database and registry keep data (%(default)s)",
    )
    demo.add_argument("--api-port", type=int, default=8000, help="default %(default)s")
    demo.add_argument("--mqtt-port", type=int, default=1884, help="default %(default)s")
    demo.add_argument("--influx-port", type=int, default=8086, help="default %(default)s")
    demo.add_argument("--devices", type=int, default=300, help="simulated devices (%(default)s)")
    demo.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="seconds between a simulated device's readings (%(default)s)",
    )
    demo.set_defaults(run=_cmd_demo)

    ingest = commands.add_parser("ingest", help="run ingest workers")
    ingest.add_argument(
        "--workers",
        type=int,
        default=settings.ingest.workers,
        help="worker processes to start (default %(default)s)",
    )
    ingest.add_argument(
        "--index", type=int, default=None, help="run only worker INDEX (client id ingest-INDEX)"
    )
    ingest.set_defaults(run=_cmd_ingest)

    api = commands.add_parser("api", help="run the HTTP API and dashboard")
    api.add_argument("--host", action="append", help="address to listen on (repeatable)")
    api.add_argument("--port", type=int, default=settings.api.port, help="default %(default)s")
    api.set_defaults(run=_cmd_api)

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
    sim.set_defaults(run=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lantaarn` command."""
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # A line per HTTP request to InfluxDB would drown what operators need to see.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser(settings).parse_args(argv)
    from lantaarn.localstack import StackError  # noqa: PLC0415

    try:
        code: int = args.run(settings, args)
    except StackError as exc:
        print(f"lantaarn: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
