"""The command rule's read at fleet scale: how long one round's look at the command history
takes (`Registry.command_outcomes`, one grouped query) on SQLite and PostgreSQL.

`--lamps` lampposts over 10 tenants, each sent `--per-lamp` commands within the last 6 hours
(as a night schedule does), one lamp in 50 refusing them all; then the evaluator's read for
every tenant over the built-in's 6-hour window, `--repeat` times, and one evaluator round of
the `lamp-refusing` rule of every tenant.

    .venv/bin/python -m bench.alert_commands --lamps 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from alerting import Evaluator, EvaluatorConfig
from devices import Device, Registry, Tenant
from devices.alert_rules import builtin_for
from devices.command_history import Answer, CommandStore, Issuer, NewCommand
from lantaarn.localstack import free_port
from timeseries import InfluxClient, InfluxConfig

RESULTS = Path(__file__).resolve().parent / "results" / "alerts.md"
TENANTS = [f"GM{n:04d}" for n in range(100, 110)]
NOW = datetime.now(UTC).replace(microsecond=0)


def _seed(url: str, lamps: int, per_lamp: int) -> int:
    devices = [
        Device(f"lp-{n:06d}", TENANTS[n % len(TENANTS)], "lamppost", "L", 52.3, 4.9)
        for n in range(lamps)
    ]
    with Registry(url) as registry:
        for tenant in TENANTS:
            registry.add_tenant(Tenant(tenant, tenant))
            rule = builtin_for("lamp-refusing", tenant)
            assert rule is not None
            registry.add_rule(rule)
        registry.add_devices(devices)
    with CommandStore(url) as store:
        for step in range(per_lamp):
            at = NOW - timedelta(hours=5) + timedelta(minutes=60 * step)
            new = [
                NewCommand(d.tenant, d.device_id, "set_dim_level", {"level": 40}, at)
                for d in devices
            ]
            made, _ = store.create(new, Issuer(None, "operator"), now=at)
            answers = [
                Answer(
                    c.tenant, c.device_id, c.id, "refused" if n % 50 == 0 else "done", "override"
                )
                for n, c in enumerate(made)
            ]
            store.record_answers(answers, at)
    return len(range(0, lamps, 50))


async def _measure(url: str, repeat: int) -> tuple[list[float], float, int]:
    with Registry(url) as registry:
        since = NOW - timedelta(hours=6)
        reads = []
        for _ in range(repeat):
            started = time.perf_counter()
            registry.command_outcomes(TENANTS, since)
            reads.append(time.perf_counter() - started)
        async with InfluxClient(InfluxConfig(f"http://[::1]:{free_port()}")) as unused:
            evaluator = Evaluator(registry, unused, [], EvaluatorConfig("bench"))
            started = time.perf_counter()
            await evaluator.evaluate(NOW)
            round_s = time.perf_counter() - started
        firing = len(registry.alerts(states=["firing"], limit=100_000))
    return reads, round_s, firing


POSTGRES = os.environ.get(
    "LANTAARN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)


@contextmanager
def _postgres() -> Iterator[str | None]:
    """A schema of its own on the local PostgreSQL (None when it is not reachable)."""
    engine = create_engine(POSTGRES)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        print(f"PostgreSQL not used: {exc.orig}", file=sys.stderr)
        engine.dispose()
        yield None
        return
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def bench(args: argparse.Namespace) -> str:
    """Run on each database; the report as Markdown."""
    rows = []
    with tempfile.TemporaryDirectory() as folder, _postgres() as pg:
        urls = [("SQLite", f"sqlite:///{Path(folder) / 'registry.sqlite3'}")]
        if pg is not None:
            urls.append(("PostgreSQL", pg))
        for name, url in urls:
            started = time.perf_counter()
            refusing = _seed(url, args.lamps, args.per_lamp)
            seeded = time.perf_counter() - started
            reads, round_s, firing = asyncio.run(_measure(url, args.repeat))
            rows.append(
                f"| {name} | {args.lamps * args.per_lamp:,} | {seeded:.0f} s | "
                f"{statistics.median(reads) * 1000:.0f} / {max(reads) * 1000:.0f} ms | "
                f"{round_s * 1000:.0f} ms | {firing} of {refusing} |"
            )
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"\n## The lamp-refusing rule: {args.lamps:,} lamps, {args.per_lamp} commands each in 6 h "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n\n"
        f"`python -m bench.alert_commands --lamps {args.lamps} --per-lamp {args.per_lamp} "
        f"--repeat {args.repeat}` on {platform.node()} ({os.cpu_count()} cores, Python "
        f"{platform.python_version()}), load average before the run {load}; the machine shared "
        "with other work.\n\n"
        "| registry | commands stored | seeding | read of a round, median / max | "
        "evaluator round (10 rules) | alerts firing |\n| --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lamps", type=int, default=10_000)
    parser.add_argument("--per-lamp", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-save", action="store_true", help="do not append to the results")
    args = parser.parse_args()
    report = bench(args)
    print(report)
    if not args.no_save:
        with RESULTS.open("a") as out:
            out.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
