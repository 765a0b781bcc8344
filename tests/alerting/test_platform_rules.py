"""The platform's own Prometheus alerting rules (deploy/prometheus/): valid, and each alert
fires on the series that should raise it (`promtool test rules`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import require_program

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_program("promtool", "prometheus")
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, check=False, cwd=RULES
    )


def test_the_rules_are_valid() -> None:
    done = _promtool("check", "rules", "lantaarn-platform.rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_each_alert_fires_when_it_should() -> None:
    done = _promtool("test", "rules", "lantaarn-platform.tests.yml")
    assert done.returncode == 0, done.stdout + done.stderr
