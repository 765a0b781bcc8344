"""The `lantaarn` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lantaarn.commands import (
    api,
    broker_config,
    demo,
    devices,
    ingest,
    keys,
    rollups,
    simulate,
)
from lantaarn.localstack import StackError
from lantaarn.settings import Settings

# One module per subcommand (lantaarn/commands/); add new ones here.
COMMANDS = (demo, ingest, api, simulate, keys, devices, broker_config, rollups)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lantaarn` command."""
    settings = Settings()
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
    return code
