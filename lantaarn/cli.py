"""The `lantaarn` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from ingest import BrokerRefused
from lantaarn.commands import (
    alerts,
    api,
    broker_config,
    demo,
    device_commands,
    devices,
    doctor,
    influx_users,
    ingest,
    keys,
    pki,
    rollups,
    scheduler,
    simulate,
)
from lantaarn.localstack import StackError
from lantaarn.settings import Settings
from timeseries import InfluxAuthFailed

# One module per subcommand (lantaarn/commands/); add new ones here.
COMMANDS = (
    demo,
    ingest,
    api,
    simulate,
    keys,
    devices,
    broker_config,
    influx_users,
    rollups,
    pki,
    doctor,
    scheduler,
    device_commands,
    alerts,
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
    for command in COMMANDS:
        command.add(commands, settings)
    return parser


# Failures that retrying will not mend: the command stops with their message, no traceback.
FATAL: tuple[type[Exception], ...] = (InfluxAuthFailed, BrokerRefused)


def _fatal(exc: BaseException) -> Exception | None:
    """The first fatal failure inside `exc` (also inside exception groups of task groups)."""
    if isinstance(exc, FATAL):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _fatal(inner)
            if found is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lantaarn` command."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"LANTAARN_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        print(f"lantaarn: invalid settings: {problems}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # A line per HTTP request to InfluxDB would drown what operators need to see.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser(settings).parse_args(argv)
    try:
        code: int = args.run(settings, args)
    except StackError as exc:
        print(f"lantaarn: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        fatal = _fatal(exc)
        if fatal is None:
            raise
        print(f"lantaarn: {fatal}", file=sys.stderr)
        return 3
    return code
