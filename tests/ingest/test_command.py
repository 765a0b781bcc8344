"""`lantaarn ingest` as operators run it: several workers from one command, a refused login."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from devices import DEVICE_KINDS, Registry
from lantaarn.localstack import Influx, Mosquitto, private_mosquitto
from tests.conftest import require_program


def environment(tmp_path: Path, broker_port: int, influx: Influx) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        **os.environ,
        "LANTAARN_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
        "LANTAARN_MQTT__HOST": "::1",
        "LANTAARN_MQTT__PORT": str(broker_port),
        "LANTAARN_MQTT__SESSION_EXPIRY_S": "30",
        "LANTAARN_INFLUX__URL": influx.url,
        "LANTAARN_INFLUX__DATABASE": f"test_{tag}",
        "LANTAARN_INGEST__SHARE_GROUP": f"g{tag}",
        "LANTAARN_INGEST__CLIENT_ID_PREFIX": f"w{tag}",
        "LANTAARN_INGEST__METRICS_PORT": "0",
        "LANTAARN_LOG_LEVEL": "INFO",
    }


@pytest.mark.slow
def test_workers_started_together_each_know_how_many_they_are(
    tmp_path: Path, mosquitto: Mosquitto, influx: Influx
) -> None:
    env = environment(tmp_path, mosquitto.port, influx)
    with Registry(env["LANTAARN_REGISTRY_URL"]):
        pass  # migrated once here, not by both workers at the same moment
    log_path = tmp_path / "ingest.log"
    said = re.compile(r"is worker (\d) of (\d); it rolls up (.*)$", re.MULTILINE)
    with log_path.open("wb") as log:
        command = subprocess.Popen(
            [sys.executable, "-m", "lantaarn", "ingest", "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while len(said.findall(log_path.read_text())) < 2 and command.poll() is None:
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        command.send_signal(signal.SIGTERM)  # passed on to both workers
        command.wait(30)
    found = {
        int(n): (int(of), kinds.split(", ")) for n, of, kinds in said.findall(log_path.read_text())
    }
    assert sorted(found) == [1, 2], log_path.read_text()[-3000:]
    assert all(of == 2 for of, _kinds in found.values())
    first, second = found[1][1], found[2][1]
    assert first  # each rolls up some kinds...
    assert second
    assert sorted(first + second) == sorted(DEVICE_KINDS)  # ...and together each kind once
    assert command.returncode == 0


def test_a_refused_login_names_the_settings_to_set(tmp_path: Path, influx: Influx) -> None:
    require_program("mosquitto", "mosquitto")
    passwords = tmp_path / "passwords"
    passwords.write_text("")  # nobody may log in, and anonymous clients are refused
    acl = tmp_path / "acl"
    acl.write_text("")
    broker = private_mosquitto(tmp_path / "mosquitto", password_file=passwords, acl_file=acl)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lantaarn", "ingest"],
            env=environment(tmp_path, broker.port, influx),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        broker.stop()
    assert result.returncode == 3, result.stderr[-2000:]
    assert "not authorized" in result.stderr or "password" in result.stderr
    assert "LANTAARN_MQTT__USERNAME" in result.stderr
    assert "LANTAARN_MQTT__PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr
