"""`lantaarn alerts --once` as a process: settings from the environment, a real InfluxDB, a
registry file and a webhook receiver."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

from devices import Device, Registry, Tenant
from devices.alert_rules import AlertRule, RuleType
from lantaarn.localstack import Influx
from tests.alerting.receivers import webhook_receiver
from timeseries import InfluxClient, InfluxConfig, Retention, ensure_schema
from timeseries.lineprotocol import line, series_key
from timeseries.schema import RAW_RP


def _env(tmp_path: Path, influx: Influx, database: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANTAARN_")}
    env |= {
        "LANTAARN_DATA_DIR": str(tmp_path),
        "LANTAARN_INFLUX__URL": influx.url,
        "LANTAARN_INFLUX__DATABASE": database,
        **extra,
    }
    return env


def test_one_round_fires_and_notifies(tmp_path: Path, influx: Influx) -> None:
    database = f"cmd_{uuid.uuid4().hex[:10]}"
    with Registry(f"sqlite:///{tmp_path / 'registry.sqlite3'}") as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_device(Device("wl-1", "GM0363", "water_level", "Amstel", 52.36, 4.9))
        rule = AlertRule(
            "GM0363",
            "high water",
            RuleType.THRESHOLD,
            kind="water_level",
            metric="level",
            statistic="last",
            fire_at=1.5,
        )
        registry.add_rule(rule)

    async def seed() -> None:
        async with InfluxClient(InfluxConfig(influx.url, database=database)) as client:
            await ensure_schema(client, Retention())
            key = series_key("water_level", {"tenant": "GM0363", "device_id": "wl-1"})
            body = line(key, {"level": 1.8, "seq": 1}, time.time_ns() - 10**9) + "\n"
            await client.write(body.encode(), retention_policy=RAW_RP)

    asyncio.run(seed())
    with webhook_receiver() as receiver:
        env = _env(
            tmp_path,
            influx,
            database,
            LANTAARN_ALERTS__WEBHOOK_URL=receiver.url,
            LANTAARN_ALERTS__WEBHOOK_SECRET="k",
        )
        done = subprocess.run(
            [sys.executable, "-m", "lantaarn", "alerts", "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "1 rule(s), 1 alert change(s), 1 notification(s) sent" in done.stdout
        ((_, body),) = receiver.received
        assert orjson.loads(body)["alert"]["deviceId"] == "wl-1"


def test_a_webhook_without_a_secret_is_refused(tmp_path: Path, influx: Influx) -> None:
    env = _env(tmp_path, influx, "unused", LANTAARN_ALERTS__WEBHOOK_URL="http://[::1]:9/h")
    done = subprocess.run(
        [sys.executable, "-m", "lantaarn", "alerts", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "WEBHOOK_SECRET is required" in done.stdout
