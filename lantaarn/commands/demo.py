"""`lantaarn demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `demo`."""
    demo = commands.add_parser("demo", help="run the whole platform locally with a simulated fleet")
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=settings.data_dir,
        help="where broker, database and registry keep data (%(default)s)",
    )
    demo.add_argument("--api-port", type=int, default=8000, help="default %(default)s")
    demo.add_argument("--mqtt-port", type=int, default=1884, help="default %(default)s")
    demo.add_argument(
        "--mqtt-tls-port", type=int, default=8883, help="devices with a password (%(default)s)"
    )
    demo.add_argument(
        "--mqtt-certificate-port",
        type=int,
        default=8884,
        help="devices with a client certificate (%(default)s)",
    )
    demo.add_argument("--influx-port", type=int, default=8086, help="default %(default)s")
    demo.add_argument("--devices", type=int, default=300, help="simulated devices (%(default)s)")
    demo.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="seconds between a simulated device's readings (%(default)s)",
    )
    demo.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the demo until stopped."""
    from lantaarn.demo import run_demo  # noqa: PLC0415

    return run_demo(
        settings,
        data_dir=args.data_dir,
        api_port=args.api_port,
        mqtt_port=args.mqtt_port,
        tls_port=args.mqtt_tls_port,
        certificate_port=args.mqtt_certificate_port,
        influx_port=args.influx_port,
        devices=args.devices,
        interval_s=args.interval,
    )
