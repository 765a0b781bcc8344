"""`lantaarn demo` with commands: the scheduler sends the night profile's level to every lamp,
an operator's group command reaches every simulated lamp and each answers, energy answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lantaarn.localstack import free_port
from tests.conftest import require_program

pytestmark = pytest.mark.slow

DEVICES = 40


def _poll(check: Any, what: str, log: Path, limit_s: float = 90.0) -> Any:
    """Wait for `check()` to return something true; the limit only bounds a broken run."""
    give_up = time.monotonic() + limit_s
    while time.monotonic() < give_up:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"waited {limit_s:g} s for {what}:\n{log.read_text()[-3000:]}")


def test_the_demos_lamps_follow_the_scheduler_and_obey_an_operator(tmp_path: Path) -> None:
    require_program("mosquitto", "mosquitto")
    require_program("influxd", "influxdb")
    data = tmp_path / "data"
    log_path = tmp_path / "demo.log"
    for _attempt in range(4):
        api, mqtt, influx = free_port(), free_port(), free_port()
        tls, certificate = free_port(), free_port()
        argv = [
            sys.executable, "-m", "lantaarn", "demo", "--data-dir", str(data),
            "--api-port", str(api), "--mqtt-port", str(mqtt), "--influx-port", str(influx),
            "--mqtt-tls-port", str(tls), "--mqtt-certificate-port", str(certificate),
            "--devices", str(DEVICES), "--interval", "2",
        ]  # fmt: skip
        log = log_path.open("wb")
        demo = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            demo.wait(3)
        except subprocess.TimeoutExpired:
            break  # running
        log.close()
        assert demo.returncode == 2, log_path.read_text()[-3000:]
    base = f"http://127.0.0.1:{api}"
    try:
        lamps = _poll(
            lambda: [
                d["deviceId"]
                for d in httpx.get(f"{base}/v1/devices", params={"kind": "lamppost"}).json()[
                    "items"
                ]
            ],
            "the API",
            log_path,
        )

        # The scheduler sends each lamp the night profile's level in force, once, and the
        # simulated lamps answer (the commands' history is readable anonymously in the demo).
        def scheduled() -> dict[str, str] | None:
            answer = httpx.get(f"{base}/v1/commands", params={"limit": 1000}).json()
            found = {
                c["deviceId"]: c["state"] for c in answer["items"] if c["issuedRole"] == "scheduler"
            }
            done = set(lamps) <= found.keys() and all(v == "done" for v in found.values())
            return found if done else None

        by_scheduler = _poll(scheduled, "the scheduler's commands to be done", log_path)
        assert by_scheduler.keys() == set(lamps)
        # An operator commands every lamp of a tenant at once; each answers.
        key = (
            subprocess.run(
                [sys.executable, "-m", "lantaarn", "keys", "create", "--role", "operator"],
                env={**os.environ, "LANTAARN_DATA_DIR": str(data)},
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        headers = {"Authorization": f"Bearer {key}"}
        tenant = httpx.get(f"{base}/v1/devices/{lamps[0]}").json()["tenant"]
        sent = httpx.post(
            f"{base}/v1/commands",
            json={
                "name": "set_dim_level",
                "args": {"level": 30},
                "selector": {"tenant": tenant, "kind": "lamppost"},
            },
            headers=headers,
        )
        assert sent.status_code == 202, sent.text
        progress_url = base + sent.headers["Location"]
        group = _poll(
            lambda: (g := httpx.get(progress_url, headers=headers).json())["finished"] and g,
            "the group command to finish",
            log_path,
        )
        assert group["progress"] == {"done": group["devices"]}
        day = datetime.now(UTC).date().isoformat()
        energy = httpx.get(f"{base}/v1/energy", params={"tenant": tenant, "day": day})
        assert energy.status_code == 200, energy.text
        assert energy.json()["lamps"] == group["devices"]
        demo.send_signal(signal.SIGTERM)
        demo.wait(15)
        assert demo.returncode == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        log.close()
