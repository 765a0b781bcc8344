"""`lantaarn broker-config`: Mosquitto's password file and ACL from the registry."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `broker-config`."""
    folder = settings.data_dir / "mosquitto"
    parser = commands.add_parser(
        "broker-config",
        help="write Mosquitto's password file and ACL from the registry",
        description=(
            "Every active device with a broker login may publish on its own telemetry, status "
            "and cmd/ack topics and read its own cmd. The ingest login (LANTAARN_MQTT__USERNAME "
            "and __PASSWORD) may read every device's telemetry and status. Retired devices are "
            "left out. A running Mosquitto takes the files on SIGHUP (--reload-pid)."
        ),
    )
    parser.add_argument(
        "--password-file", type=Path, default=folder / "passwd", help="default %(default)s"
    )
    parser.add_argument("--acl-file", type=Path, default=folder / "acl", help="default %(default)s")
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="ROLE:USERNAME:PASSWORD_FILE",
        help=(
            "a further service login (role ingest, fleet or operator; add :TENANT to limit it "
            "to one tenant, which a fleet login must be: only a device's own login publishes "
            "for any device); its password is read from PASSWORD_FILE (repeatable)"
        ),
    )
    parser.add_argument(
        "--stage-tls",
        type=Path,
        metavar="DIR",
        help="also copy the authority's CA, server certificate and key and CRL "
        f"(from {settings.pki_dir()}) to DIR, readable by the broker",
    )
    parser.add_argument(
        "--reload-pid", type=int, help="send SIGHUP to this Mosquitto process afterwards"
    )
    parser.set_defaults(run=run)


def _service(spec: str) -> tuple[str, str, str, str | None]:
    """(role, username, password, tenant) of a --service option; ValueError when malformed."""
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"--service {spec!r}: give ROLE:USERNAME:PASSWORD_FILE[:TENANT]")
    role, username, path = parts[:3]
    password = Path(path).read_text(encoding="utf-8").strip()
    if not password:
        raise ValueError(f"{path} holds no password")
    return role, username, password, parts[3] if len(parts) == 4 else None


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Write both files, then reload the broker if asked."""
    from broker.acl import Role, ServiceLogin  # noqa: PLC0415
    from broker.config import BrokerConfigError, stage_tls  # noqa: PLC0415
    from broker.passwords import write_broker_config  # noqa: PLC0415
    from devices import DeviceError, Registry  # noqa: PLC0415

    try:
        services = []
        if settings.mqtt.username and settings.mqtt.password:
            services.append(
                ServiceLogin.with_password(
                    settings.mqtt.username, settings.mqtt.password.get_secret_value(), Role.INGEST
                )
            )
        for spec in args.service:
            role, username, password, tenant = _service(spec)
            services.append(ServiceLogin.with_password(username, password, Role(role), tenant))
        with Registry(settings.registry()) as registry:
            written = write_broker_config(registry, args.password_file, args.acl_file, services)
        if args.stage_tls is not None:
            stage_tls(settings.pki_dir(), args.stage_tls)
        if args.reload_pid is not None:
            os.kill(args.reload_pid, signal.SIGHUP)
    except (DeviceError, BrokerConfigError, OSError, ValueError) as exc:
        sys.stderr.write(f"lantaarn: {exc}\n")
        return 1
    sys.stdout.write(
        f"{written.devices} device and {written.services} service logins: "
        f"{written.password_file}, ACL {written.acl_file}\n"
    )
    if not services:
        sys.stdout.write("note: no ingest login (set LANTAARN_MQTT__USERNAME and __PASSWORD)\n")
    if args.reload_pid is not None:
        sys.stdout.write(f"sent SIGHUP to {args.reload_pid}\n")
    return 0
