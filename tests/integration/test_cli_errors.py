"""The command says what is wrong and stops, rather than retrying for ever or dumping a trace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lantaarn.localstack import Mosquitto, private_influx
from tests.conftest import require_program


def lantaarn(
    args: list[str], env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lantaarn", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_ingest_stops_with_a_clear_message_when_influxdb_refuses_its_login(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    require_program("influxd", "influxdb")
    guarded = private_influx(tmp_path / "influx", auth_enabled=True)
    try:
        result = lantaarn(
            ["ingest"],
            {
                "LANTAARN_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
                "LANTAARN_MQTT__PORT": str(mosquitto.port),
                "LANTAARN_INFLUX__URL": guarded.url,
                "LANTAARN_INFLUX__USERNAME": "ingest",
                "LANTAARN_INFLUX__PASSWORD": "wrong",
                "LANTAARN_INGEST__METRICS_PORT": "0",
            },
        )
    finally:
        guarded.stop()
    assert result.returncode == 3, result.stderr[-2000:]
    assert "InfluxDB refused our credentials" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_settings_are_named() -> None:
    result = lantaarn(["api"], {"LANTAARN_INFLUX__RETENTION_RAW": "ninety days"})
    assert result.returncode == 2
    assert "LANTAARN_INFLUX__RETENTION_RAW" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("port", ["70000", "http"])
def test_a_bad_port_is_named(port: str) -> None:
    result = lantaarn(["api"], {"LANTAARN_API__PORT": port})
    assert result.returncode == 2
    assert "LANTAARN_API__PORT" in result.stderr
