"""`lantaarn scheduler` killed (SIGKILL) in the middle of sending a step, on PostgreSQL: the
lamps it had committed are not sent again, the rest are sent by the next run, each once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from devices import Device, Registry
from devices.command_history import commands
from devices.schedule_store import LampGroup, ScheduleStore
from devices.schedules import Step
from tests.devices.conftest import AMSTERDAM, _postgres_schema

LAMPS = 60
BATCH = 10
BLOCKED = "lp-035"  # in the fourth batch: three batches commit before it


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty schema on the local PostgreSQL."""
    yield from _postgres_schema()


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANTAARN_")}
    env.update(
        LANTAARN_REGISTRY_URL=url,
        LANTAARN_SCHEDULER__BATCH=str(BATCH),
        LANTAARN_SCHEDULER__TICK_S="0.5",
        LANTAARN_SCHEDULER__LEASE_S="2",
    )
    return env


def _wait_for(check: object, what: str, limit_s: float = 60.0) -> None:
    # Polls a condition; the limit only bounds a broken run, nothing is asserted on timing.
    give_up = time.monotonic() + limit_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > give_up:
            pytest.fail(f"waited {limit_s:g} s for {what}")
        time.sleep(0.1)


def test_a_scheduler_killed_during_a_step_neither_doubles_nor_skips(
    postgres_url: str, tmp_path: Path
) -> None:
    with Registry(postgres_url) as registry:
        registry.add_tenant(AMSTERDAM)
        registry.add_devices(
            [
                Device(f"lp-{n:03d}", "GM0363", "lamppost", f"Lamp {n}", 52.37, 4.89)
                for n in range(LAMPS)
            ]
        )
    with ScheduleStore(postgres_url) as store:
        # One step at midnight: whenever the test runs, 40 % is the level in force.
        store.create("GM0363", "Night", (Step.parse("00:00", 40),), LampGroup())
    engine = create_engine(postgres_url)

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(commands)).scalar_one())

    def waiting_on_a_lock() -> bool:
        with engine.connect() as conn:
            return bool(
                conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one()
            )

    # Hold one lamp's row: the scheduler's fourth transaction (its commands reference that
    # lamp) waits there, in the middle of the step, after three transactions committed.
    holder = engine.connect()
    lock = holder.begin()
    holder.execute(text("SELECT 1 FROM devices WHERE device_id = :d FOR UPDATE"), {"d": BLOCKED})
    log = (tmp_path / "scheduler.log").open("wb")
    first = subprocess.Popen(
        [sys.executable, "-m", "lantaarn", "scheduler"],
        env=_env(postgres_url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(waiting_on_a_lock, "the scheduler to block mid-step")
        assert first.poll() is None, (tmp_path / "scheduler.log").read_text()
        assert stored() == 3 * BATCH
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        lock.rollback()
        holder.close()
        log.close()
    assert stored() == 3 * BATCH  # the killed transaction never committed
    # Started again: once the dead one's lease ran out, it sends the rest.
    with (tmp_path / "again.log").open("wb") as log_again:
        again = subprocess.Popen(
            [sys.executable, "-m", "lantaarn", "scheduler"],
            env=_env(postgres_url),
            stdout=log_again,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(lambda: stored() >= LAMPS, "the rest of the step")
        finally:
            again.send_signal(signal.SIGTERM)  # a clean stop gives the lease back
            assert again.wait(timeout=30) == 0, (tmp_path / "again.log").read_text()
    # Nothing is left to send: every lamp has its step, once.
    once = subprocess.run(
        [sys.executable, "-m", "lantaarn", "scheduler", "--once"],
        env=_env(postgres_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert once.returncode == 0, once.stderr
    assert once.stdout.strip() == "0 dimming step(s) sent"
    with engine.connect() as conn:
        rows = conn.execute(select(commands.c.device_id, commands.c.args)).all()
    engine.dispose()
    per_lamp = Counter(device for device, _ in rows)
    assert per_lamp == {f"lp-{n:03d}": 1 for n in range(LAMPS)}
    assert {args for _, args in rows} == {'{"level": 40}'}
