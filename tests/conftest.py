"""Fixtures: private Mosquitto and InfluxDB processes, started once per session on free ports."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from lantaarn.localstack import (
    Influx,
    Mosquitto,
    ServiceProcess,
    private_influx,
    private_mosquitto,
)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Under CI the property tests draw the same examples every run: a red run must be reproducible
# (and not a new random draw); by hand they explore afresh each time.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if IN_CI:
    settings.load_profile("ci")
_SERVICES: list[ServiceProcess] = []


def require_program(program: str, package: str) -> None:
    """Skip when a service's program is missing; under CI=true that is a failure."""
    if shutil.which(program) or Path(f"/usr/sbin/{program}").exists():
        return
    message = f"{program} is missing: apt-get install {package} (make test does)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private broker for the whole session, anonymous access, on ::1 and 127.0.0.1."""
    require_program("mosquitto", "mosquitto")
    broker = private_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    _SERVICES.append(broker.service)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx]:
    """A private InfluxDB 1.x for the whole session."""
    require_program("influxd", "influxdb")
    database = private_influx(tmp_path_factory.mktemp("influxdb"))
    _SERVICES.append(database.service)
    yield database
    database.stop()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Show the services' logs when a test fails."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVICES:
        for service in _SERVICES:
            report.sections.append((f"{service.name} log", service.log_tail(60)))
