"""`lantaarn ingest`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import subprocess
import sys
from dataclasses import replace

from lantaarn.commands import Subcommands, hostport, install_stop
from lantaarn.settings import Settings

log = logging.getLogger(__name__)


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `ingest`."""
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
    ingest.add_argument(
        "--leave",
        action="store_true",
        help="scale down: retire the stopped worker INDEX for good (store what its session "
        "holds, then have the broker delete the session) and exit",
    )
    ingest.add_argument(
        "--leave-quiet",
        type=float,
        default=settings.worker(0).leave_quiet_s,
        metavar="SECONDS",
        help="with --leave: how long nothing new may arrive before the session counts as "
        "drained (default %(default)s)",
    )
    ingest.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run one worker in this process, or start several worker processes."""
    from prometheus_client import CollectorRegistry, start_http_server  # noqa: PLC0415

    from devices import Registry  # noqa: PLC0415
    from ingest import BrokerRefused, LeaveInterrupted, run_leaver, run_worker  # noqa: PLC0415
    from ingest.metrics import WorkerCollector  # noqa: PLC0415

    if args.leave:
        if args.index is None:
            # Never guess which worker to retire: deleting a live worker's session is not undone.
            log.error("--leave needs --index N: the worker whose session is to be retired")
            return 2
        if args.leave_quiet < 0:
            log.error("--leave-quiet must not be negative")
            return 2
    elif args.workers > 1 and args.index is None:
        return _spawn(args.workers)
    if args.index is not None and not args.leave and not 0 <= args.index < args.workers:
        # Not refused (a worker started alone, e.g. while scaling, still stores readings), but
        # it rolls up no kinds: every worker must be told how many there are.
        log.warning(
            "--index %d with %d workers: set --workers or LANTAARN_INGEST__WORKERS to the "
            "number of workers, or this one rolls up no device kinds",
            args.index,
            args.workers,
        )

    index = args.index or 0
    collector = WorkerCollector()
    if settings.ingest.metrics_port:
        metrics = CollectorRegistry()
        metrics.register(collector)
        port = settings.ingest.metrics_port + index
        where = hostport(settings.ingest.metrics_host, port)
        try:
            start_http_server(port, addr=settings.ingest.metrics_host, registry=metrics)
            log.info("metrics on http://%s/metrics", where)
        except OSError as exc:
            # Counters are worth less than readings: ingest goes on without them.
            log.warning("no /metrics: cannot listen on %s (%s)", where, exc)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(stop)
        with Registry(settings.registry()) as registry:
            if args.leave:
                await run_leaver(
                    replace(settings.worker(index, args.workers), leave_quiet_s=args.leave_quiet),
                    settings.broker(),
                    settings.influx_config(),
                    registry,
                    settings.retention(),
                    stop,
                    observe=collector.add,
                )
                return
            await run_worker(
                settings.worker(index, args.workers),
                settings.broker(),
                settings.influx_config(),
                registry,
                settings.retention(),
                stop,
                observe=collector.add,
            )

    try:
        asyncio.run(main())
    except (LeaveInterrupted, BrokerRefused) as exc:
        if not args.leave:
            if isinstance(exc, BrokerRefused) and _NOT_ALLOWED.search(str(exc)):
                raise BrokerRefused(f"{exc}. {LOGIN_HINT}") from exc
            raise
        # Expected ends of a leave (the worker still runs, or we were stopped): in words.
        log.error("%s", exc)  # noqa: TRY400 - no traceback
        return 1
    return 0


# The broker's reason codes for a login it does not accept (0x86 bad user name or password,
# 0x87 not authorized, 0x8C bad authentication method).
_NOT_ALLOWED = re.compile(r"0x8[67c]\b|not authori[sz]ed|bad user ?name or password", re.IGNORECASE)
LOGIN_HINT = (
    "Give ingest its broker login: set LANTAARN_MQTT__USERNAME and LANTAARN_MQTT__PASSWORD "
    "(the broker's `lantaarn-ingest` service login)"
)


def _spawn(count: int) -> int:
    """Start workers 0 .. count-1 as child processes, each told how many there are."""
    argv = [sys.executable, "-m", "lantaarn", "ingest", "--workers", str(count), "--index"]
    children = [
        subprocess.Popen([*argv, str(i)])  # noqa: S603 - our own interpreter and arguments
        for i in range(count)
    ]

    def forward(sig: int, _frame: object) -> None:
        for child in children:
            child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)
