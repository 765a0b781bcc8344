"""What the API needs to run, built by the `lantaarn` command from its settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.registry import Collector

from broker.command_service import CommandServiceConfig
from devices.scheduler import SchedulerConfig
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
    # The address clients use (`https://lantaarn.example.org`), for absolute `Link` and
    # `Location` headers; None: those headers carry paths, never the request's Host header.
    public_url: str | None = None
    # Bytes a request body may have: any route, and the bulk import of devices.
    max_body_bytes: int = 64 * 1024
    max_import_bytes: int = 32 * 1024 * 1024
    # Failed key checks a client address may make at once, and seconds until it may make one
    # more (a token bucket per address; an IPv6 client's address is its /64).
    auth_failure_burst: int = 20
    auth_failure_refill_s: float = 6.0
    # A bearer token that may read /metrics and nothing else (for Prometheus); admin keys may too.
    metrics_token: str | None = field(default=None, repr=False)
    # Dashboard sessions end after this many seconds unused, and this many after sign-in.
    session_idle_s: float = 30 * 60
    session_max_s: float = 12 * 3600
    # The dashboard map's base layer: an XYZ tile URL ({z}/{x}/{y}) the operators' browsers load
    # tiles from, and its attribution; "" draws the plain map, which needs no network.
    map_tiles: str = ""
    map_attribution: str = ""
    # The certificate authority's folder (broker/pki.py); None: no device certificates.
    pki_dir: Path | None = None
    # The command service to run in the API's process; None: commands are stored only (another
    # process's command service publishes them).
    commands: CommandServiceConfig | None = None
    # The dimming scheduler to run in the API's process; None: it runs elsewhere (or not).
    scheduler: SchedulerConfig | None = None
    # Whether tenants' alert webhooks may name loopback, private and other non-public
    # addresses (the evaluator checks again with the same setting before every request).
    alert_webhooks_internal: bool = False
