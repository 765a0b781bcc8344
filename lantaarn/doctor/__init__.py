"""`lantaarn doctor`: check a running deployment from the outside, each finding with its fix."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from lantaarn.doctor.broker import (
    check_persistence,
    check_queue,
    check_reachable,
    check_tls,
    session_counts,
)
from lantaarn.doctor.config import BrokerTarget, DoctorConfig, ProbeConfig
from lantaarn.doctor.findings import Finding, Status, at_risk, render
from lantaarn.doctor.registry import check_migrations
from lantaarn.doctor.storage import check_influx
from lantaarn.doctor.workers import check_workers

__all__ = [
    "BrokerTarget",
    "DoctorConfig",
    "Finding",
    "ProbeConfig",
    "Status",
    "at_risk",
    "diagnose",
    "render",
]

log = logging.getLogger(__name__)

BROKER_CLOCK = Finding(
    "clock: broker",
    Status.INFO,
    "not readable over MQTT (Mosquitto publishes no time in $SYS); it stamps nothing that is "
    "stored: readings carry the device's time or the worker's receive time",
)


async def diagnose(config: DoctorConfig) -> list[Finding]:
    """Run every check; never raises for what it finds (a failed part is a finding)."""
    findings: list[Finding] = []
    findings += await asyncio.to_thread(check_tls, config.broker)
    reachable, figures = await asyncio.to_thread(check_reachable, config.broker, config.probe)
    findings += reachable
    if not at_risk(reachable):
        if config.run_probe:
            findings += await asyncio.to_thread(check_queue, config.broker, config.probe)
        else:
            findings.append(
                Finding(
                    "broker: queue for an offline session",
                    Status.INFO,
                    "not measured (--no-probe)",
                )
            )
        sessions = session_counts(figures)
        if sessions is not None:
            findings.append(sessions)
    findings += check_persistence(*_broker_config(config.broker_config))
    findings += await check_workers(
        config.workers,
        config.worker_client_prefix,
        config.metrics_host,
        config.metrics_port,
        config.max_clock_skew_s,
    )
    findings += await check_influx(config.influx, config.retention, config.max_clock_skew_s)
    findings += await asyncio.to_thread(check_migrations, config.registry_url)
    findings.append(BROKER_CLOCK)
    return findings


def _broker_config(path: Path | None) -> tuple[str | None, str]:
    if path is None:
        return None, ""
    try:
        return path.read_text(errors="replace"), str(path)
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None, str(path)
