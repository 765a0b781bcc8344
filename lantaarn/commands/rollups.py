"""`lantaarn rollups rebuild`: recompute rollups from raw readings for a time range."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time zone, e.g. 2026-11-28T00:00Z")
    return moment


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `rollups`."""
    rollups = commands.add_parser("rollups", help="manage rollups")
    actions = rollups.add_subparsers(dest="action", required=True)
    rebuild = actions.add_parser(
        "rebuild",
        help="recompute rollups from raw readings",
        description=(
            "Recompute the rollups of every whole window in [START, END) from the raw readings "
            "(per device and per tenant, and the 1-minute completeness rows), e.g. after "
            "readings arrived later than the grace period."
        ),
    )
    rebuild.add_argument("--start", type=_moment, required=True, help="RFC 3339, inclusive")
    rebuild.add_argument("--end", type=_moment, required=True, help="RFC 3339, exclusive")
    rebuild.add_argument(
        "--window",
        action="append",
        choices=["1m", "1h"],
        help=f"window to rebuild (repeatable; default {', '.join(settings.ingest.rollup_windows)})",
    )
    rebuild.add_argument("--kind", action="append", help="device kind (repeatable; default all)")
    rebuild.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild and report how many rollup rows were written."""
    from devices import DEVICE_KINDS  # noqa: PLC0415
    from timeseries import BatchWriter, InfluxClient, ensure_schema  # noqa: PLC0415
    from timeseries.rollups import (  # noqa: PLC0415
        read_coverage,
        rebuild,
        widened,
        window_ns,
        write_coverage,
    )
    from timeseries.schema import fleet_progress_window  # noqa: PLC0415

    kinds = args.kind or sorted(DEVICE_KINDS)
    unknown = sorted(set(kinds) - set(DEVICE_KINDS))
    if unknown:
        print(f"lantaarn: unknown kind(s): {', '.join(unknown)}")  # noqa: T201
        return 2
    windows = args.window or list(settings.ingest.rollup_windows)
    start = int(args.start.timestamp() * 1e9)
    end = int(args.end.timestamp() * 1e9)

    async def main() -> int:
        async with InfluxClient(settings.influx_config()) as client:
            await ensure_schema(client, settings.retention())
            writer = BatchWriter(client)
            total = 0
            known = await read_coverage(client)
            for window in windows:
                width = window_ns(window)
                first, last = start - start % width, end - end % width
                for kind in kinds:
                    # A day at a time: bounded memory however long the range.
                    for at in range(first, last, 86400 * 10**9):
                        upto = min(last, at + 86400 * 10**9)
                        total += await rebuild(client, writer, kind, window, at, upto)
                    # Answers may use rollups where they are known complete: widen that span
                    # when the rebuilt range touches it (or start one when there is none), for
                    # the device rollups and for the fleet rollups the same rebuild wrote
                    # (each has its own progress: the fleet's may start later).
                    for progress in (window, fleet_progress_window(window)):
                        wider = widened(known.get((kind, progress)), first, last)
                        if wider is not None:
                            await write_coverage(writer, kind, progress, wider)
            return total

    rows = asyncio.run(main())
    print(f"rebuilt {rows} rollup rows ({', '.join(windows)}) for {len(kinds)} kind(s)")  # noqa: T201
    return 0
