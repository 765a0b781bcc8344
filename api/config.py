"""What the API needs to run, built by the `lantaarn` command from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prometheus_client.registry import Collector

from timeseries import InfluxConfig

API_VERSION = "1.0.0"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The API's resources and rules."""

    registry_url: str
    influx: InfluxConfig
    dashboard_dir: Path | None = None
    cors_origins: tuple[str, ...] = ()
    # Whether callers without an API key may read telemetry and devices (of every tenant).
    anonymous_read: bool = False
    max_range_days: float = 366.0
    # More metrics for /metrics, e.g. the ingest worker's when it runs in the same process.
    collectors: tuple[Collector, ...] = ()
    # The certificate authority's folder (broker/pki.py); None: no device certificates.
    pki_dir: Path | None = None
