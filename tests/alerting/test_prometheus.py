"""A real Prometheus (Debian's `prometheus`) loads the platform's alerting rules and scrapes a
running ingest worker and API: every rule is healthy and evaluates over real series."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lantaarn.localstack import Influx, Mosquitto, free_port
from tests.conftest import require_program
from tests.ingest.processes import WorkerProcess

RULES = (
    Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "lantaarn-platform.rules.yml"
)
TOKEN = "metrics-token-for-tests"
RULE_COUNT = RULES.read_text().count("- alert: ")


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, **kwargs: object) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1, **kwargs).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{url} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture
def platform(tmp_path: Path, mosquitto: Mosquitto, influx: Influx) -> Iterator[tuple[int, int]]:
    """A worker (metrics port) and an API (port), both processes on the session's services."""
    metrics_port, api_port = free_port(), free_port()
    env = {
        "LANTAARN_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
        "LANTAARN_MQTT__HOST": "::1",
        "LANTAARN_MQTT__PORT": str(mosquitto.port),
        "LANTAARN_INFLUX__URL": influx.url,
        "LANTAARN_INFLUX__DATABASE": "prometheus_test",
        "LANTAARN_INGEST__METRICS_PORT": str(metrics_port),
        "LANTAARN_INGEST__CLIENT_ID_PREFIX": f"prom-{os.getpid()}",
        "LANTAARN_INGEST__SHARE_GROUP": f"prom-{os.getpid()}",
        "LANTAARN_API__HOSTS": '["::1"]',
        "LANTAARN_API__METRICS_TOKEN": TOKEN,
    }
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    api_log = tmp_path / "api.log"
    with api_log.open("wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "lantaarn", "api", "--port", str(api_port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(f"http://[::1]:{api_port}/v1/health/live", api, api_log)
        yield metrics_port, api_port
    finally:
        api.terminate()
        api.wait(10)
        worker.stop()


def test_prometheus_loads_the_rules_and_scrapes_worker_and_api(
    tmp_path: Path, platform: tuple[int, int]
) -> None:
    require_program("prometheus", "prometheus")
    metrics_port, api_port = platform
    (tmp_path / "token").write_text(TOKEN)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: lantaarn-ingest
    static_configs:
      - targets: ["[::1]:{metrics_port}"]
  - job_name: lantaarn-api
    authorization:
      credentials_file: {tmp_path / "token"}
    static_configs:
      - targets: ["[::1]:{api_port}"]
"""
    )
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        prometheus = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=[::1]:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://[::1]:{port}"
    try:
        _wait(f"{url}/-/ready", prometheus, log_path)
        deadline = time.monotonic() + 60
        while True:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]
            health = {t["labels"]["job"]: t["health"] for t in targets["activeTargets"]}
            rules = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
            evaluated = [
                r for g in rules for r in g["rules"] if r.get("lastEvaluation", "").startswith("2")
            ]
            both_up = health == {"lantaarn-ingest": "up", "lantaarn-api": "up"}
            if both_up and len(evaluated) == RULE_COUNT:
                break
            assert time.monotonic() < deadline, (health, rules, log_path.read_text()[-2000:])
            time.sleep(0.5)
        (group,) = rules
        assert group["name"] == "lantaarn-platform"
        assert {r["health"] for r in group["rules"]} == {"ok"}
        # The series the rules read exist: what a rule names, the worker and API export.
        for query in (
            "lantaarn_ingest_unacknowledged_messages",
            "lantaarn_ingest_storage_unavailable",
            "lantaarn_ingest_messages_total",
            'up{job="lantaarn-api"}',
            "lantaarn_http_requests_total",
        ):
            answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()
            assert answer["data"]["result"], query
        # A healthy platform raises no alert (the API's health checks are answered).
        alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        assert [a for a in alerts if a["state"] == "firing"] == []
    finally:
        prometheus.terminate()
        prometheus.wait(10)
