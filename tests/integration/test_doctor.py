"""`lantaarn doctor` against real deployments: a Mosquitto left at its defaults (it must find the
loss hazard and exit non-zero) and one configured as we ship it (it must pass); its TLS check
against a real TLS listener with our own CA, another CA and the wrong host name.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.pki import Authority
from devices import Registry
from lantaarn.doctor import BrokerTarget, Finding, Status
from lantaarn.doctor.broker import check_tls
from lantaarn.doctor.storage import check_influx
from lantaarn.localstack import Influx, Mosquitto, ServiceProcess, free_port
from tests.conftest import require_program
from tests.ingest.processes import WorkerProcess
from timeseries import InfluxClient, InfluxConfig, Retention, ensure_schema

pytestmark = pytest.mark.slow


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("::1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _broker(folder: Path, lines: list[str], port: int) -> ServiceProcess:
    """A Mosquitto with exactly these configuration lines (and a listener on ::1)."""
    require_program("mosquitto", "mosquitto")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "mosquitto.conf"
    owner = ["user root"] if os.geteuid() == 0 else []
    config.write_text("\n".join([f"listener {port} ::1", *lines, *owner, ""]))
    service = ServiceProcess(
        "mosquitto", ["mosquitto", "-c", str(config)], folder / "mosquitto.log", lambda: _open(port)
    )
    service.start()
    return service


@pytest.fixture
def deployment(influx: Influx, tmp_path: Path) -> dict[str, str]:
    """InfluxDB with the schema and a migrated registry: the environment of the doctor."""
    database = f"doctor_{uuid.uuid4().hex[:8]}"

    async def schema() -> None:
        async with InfluxClient(InfluxConfig(influx.url, database)) as client:
            await ensure_schema(client, Retention())

    asyncio.run(schema())
    registry_url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    with Registry(registry_url):
        pass  # opening migrates it
    return {
        "LANTAARN_INFLUX__URL": influx.url,
        "LANTAARN_INFLUX__DATABASE": database,
        "LANTAARN_REGISTRY_URL": registry_url,
        "LANTAARN_MQTT__HOST": "::1",
        "LANTAARN_INGEST__ROLLUP_WINDOWS": "[]",
    }


def doctor(env: dict[str, str], *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "lantaarn", "doctor", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_broker_at_its_defaults_is_found_to_lose_data(
    deployment: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    broker = _broker(tmp_path / "mosquitto", ["allow_anonymous true"], port)
    try:
        env = {**deployment, "LANTAARN_MQTT__PORT": str(port), "LANTAARN_INGEST__METRICS_PORT": "0"}
        config = str(tmp_path / "mosquitto" / "mosquitto.conf")
        code, output = doctor(env, "--broker-config", config)
    finally:
        broker.stop()
    assert code == 1, output
    assert "[FAIL] broker: queue for an offline session: the broker kept 1000 of 1500" in output
    assert "[FAIL] broker: persistence" in output
    assert "max_queued_messages" in output  # the fix names the setting
    # What is right is said to be right.
    assert "[  OK] influxdb: retention" in output
    assert "[  OK] registry: migrations" in output


def test_a_broker_configured_as_shipped_passes(deployment: dict[str, str], tmp_path: Path) -> None:
    require_program("mosquitto", "mosquitto")
    broker = Mosquitto(tmp_path / "mosquitto", free_port())
    broker.start()
    metrics = free_port()
    env = {
        **deployment,
        "LANTAARN_MQTT__PORT": str(broker.port),
        "LANTAARN_INGEST__METRICS_PORT": str(metrics),
    }
    worker = WorkerProcess(env, tmp_path / "worker-0.log", 0)
    try:
        worker.start()
        code, output = doctor(env, "--broker-config", str(broker.config_path))
        worker.terminate()
    finally:
        worker.stop()
        broker.stop()
    assert code == 0, output
    assert "[  OK] broker: queue for an offline session: kept all 1500" in output
    assert "[  OK] broker: persistence: persistence on" in output
    assert "[  OK] ingest: ingest-0: running" in output
    assert "[  OK] clock: ingest-0" in output
    assert "[  OK] clock: influxdb" in output
    assert "[FAIL]" not in output


def test_the_registry_behind_its_migrations_is_found(
    deployment: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **deployment,
        "LANTAARN_REGISTRY_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
        "LANTAARN_MQTT__PORT": str(free_port()),  # nothing listens: the broker fails too
        "LANTAARN_INGEST__METRICS_PORT": "0",
    }
    code, output = doctor(env, "--no-probe")
    assert code == 1
    assert "[FAIL] registry: migrations: the registry is at revision none" in output
    assert "[FAIL] broker: reachable" in output


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Authority]]:
    authority = Authority.create(tmp_path / "pki")
    cert, key = authority.issue_server(["localhost"], ["::1"])
    port = free_port()
    broker = _broker(
        tmp_path / "tls",
        [f"certfile {cert}", f"keyfile {key}", "allow_anonymous true"],
        port,
    )
    try:
        yield port, authority
    finally:
        broker.stop()


def test_tls_is_checked_against_the_ca_and_the_host_name(
    tls_broker: tuple[int, Authority], tmp_path: Path
) -> None:
    port, authority = tls_broker
    good = check_tls(BrokerTarget("::1", port, tls=True, ca_file=authority.ca_file))
    assert [f.status for f in good] == [Status.OK], good

    other = Authority.create(tmp_path / "other", name="someone else's CA")
    wrong_ca = check_tls(BrokerTarget("::1", port, tls=True, ca_file=other.ca_file))
    assert wrong_ca[0].status is Status.FAIL
    assert "does not verify" in wrong_ca[0].message

    # The certificate names localhost and ::1, not 127.0.0.1.
    wrong_name = check_tls(BrokerTarget("127.0.0.1", port, tls=True, ca_file=authority.ca_file))
    assert wrong_name[0].status is Status.FAIL


def test_retention_shorter_than_the_settings_is_data_at_risk(deployment: dict[str, str]) -> None:
    config = InfluxConfig(
        deployment["LANTAARN_INFLUX__URL"], deployment["LANTAARN_INFLUX__DATABASE"]
    )

    async def shorten_and_check() -> list[Finding]:
        async with InfluxClient(config) as client:
            await client.execute(
                [f'ALTER RETENTION POLICY "raw" ON "{config.database}" DURATION 7d']
            )
        return await check_influx(config, Retention(), max_skew_s=2.0)

    findings = asyncio.run(shorten_and_check())
    retention = [f for f in findings if f.check == "influxdb: retention"]
    assert [(f.status, f.message) for f in retention] == [
        (Status.FAIL, "policy 'raw' keeps 7d, the settings say 90d")
    ]
    assert any(f.check == "clock: influxdb" and f.status is Status.OK for f in findings)


def test_the_command_checks_the_tls_settings(
    deployment: dict[str, str], tls_broker: tuple[int, Authority], tmp_path: Path
) -> None:
    port, authority = tls_broker
    env = {
        **deployment,
        "LANTAARN_MQTT__PORT": str(port),
        "LANTAARN_MQTT__TLS": "true",
        "LANTAARN_MQTT__CA_FILE": str(authority.ca_file),
        "LANTAARN_INGEST__METRICS_PORT": "0",
    }
    code, output = doctor(env, "--no-probe")
    assert "[  OK] broker: TLS: TLSv1." in output, output
    assert "[  OK] broker: reachable: MQTT 5 at ::1" in output, output  # paho, over TLS
    assert code == 0, output

    other = Authority.create(tmp_path / "other", name="someone else's CA")
    code, output = doctor({**env, "LANTAARN_MQTT__CA_FILE": str(other.ca_file)}, "--no-probe")
    assert code == 1
    assert "[FAIL] broker: TLS: the broker's certificate does not verify for '::1'" in output
