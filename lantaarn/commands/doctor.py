"""`lantaarn doctor`: check a running deployment from the outside."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `doctor`."""
    doctor = commands.add_parser(
        "doctor",
        help="check a running deployment; exits 1 when data is at risk",
        description="Checks the broker (TLS, what it keeps for an offline session, "
        "persistence), every ingest worker, InfluxDB (database, retention), the registry's "
        "migrations and the clocks, and prints each finding with its fix.",
    )
    doctor.add_argument(
        "--broker-config",
        type=Path,
        default=settings.doctor.broker_config,
        metavar="FILE",
        help="mosquitto.conf to read for persistence (on the broker's host)",
    )
    doctor.add_argument(
        "--probe-messages",
        type=int,
        default=settings.doctor.probe_messages,
        metavar="N",
        help="QoS 1 messages to queue for the probe's offline session (default %(default)s)",
    )
    doctor.add_argument(
        "--no-probe",
        action="store_true",
        help="do not measure the broker's queue (it publishes N messages to a private topic)",
    )
    doctor.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Print the findings; 1 when any puts data at risk, else 0."""
    from lantaarn.doctor import (  # noqa: PLC0415
        BrokerTarget,
        DoctorConfig,
        ProbeConfig,
        at_risk,
        diagnose,
        render,
    )

    # Alembic tells of every migration context it opens; the findings say what matters.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    m, d = settings.mqtt, settings.doctor
    secret = d.password or m.password
    config = DoctorConfig(
        broker=BrokerTarget(
            m.host,
            m.port,
            m.username,
            m.password.get_secret_value() if m.password else None,
            tls=m.tls,
            ca_file=m.ca_file,
            cert_file=m.cert_file,
            key_file=m.key_file,
        ),
        probe=ProbeConfig(
            username=d.username or m.username,
            password=secret.get_secret_value() if secret else None,
            messages=args.probe_messages,
        ),
        influx=settings.influx_config(),
        retention=settings.retention(),
        registry_url=settings.registry(),
        workers=settings.ingest.workers,
        worker_client_prefix=settings.ingest.client_id_prefix,
        metrics_host=settings.ingest.metrics_host,
        metrics_port=settings.ingest.metrics_port,
        broker_config=args.broker_config,
        max_clock_skew_s=d.max_clock_skew_s,
        run_probe=not args.no_probe,
    )
    findings = asyncio.run(diagnose(config))
    print(render(findings))  # noqa: T201 - the command's output
    risky = at_risk(findings)
    print("data at risk: see the findings marked FAIL" if risky else "no data at risk found")  # noqa: T201
    return 1 if risky else 0
