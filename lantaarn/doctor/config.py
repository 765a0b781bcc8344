"""What the doctor checks against: plain values taken from the settings by the command."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from timeseries import InfluxConfig, Retention


@dataclass(frozen=True, slots=True)
class BrokerTarget:
    """How to reach the broker, as the platform's services do."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """The probe session that measures how many queued messages the broker keeps.

    Its login needs: client ids `{client_id}` and `{client_id}-pub`, a persistent session, and
    read and write on `{topic_prefix}/#` (and read on `$SYS/#` for the broker's figures).
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "lantaarn-doctor"
    topic_prefix: str = "lantaarn/doctor"
    messages: int = 1500
    quiet_s: float = 3.0  # nothing more for this long after reconnecting: all were handed over
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class DoctorConfig:
    """Everything the doctor looks at."""

    broker: BrokerTarget
    probe: ProbeConfig
    influx: InfluxConfig
    retention: Retention
    registry_url: str
    workers: int = 1
    worker_client_prefix: str = "ingest"
    metrics_host: str = "::1"
    metrics_port: int = 9464  # worker N serves /metrics on port + N; 0: none
    broker_config: Path | None = None  # mosquitto.conf, when the doctor runs beside the broker
    max_clock_skew_s: float = 2.0
    run_probe: bool = True
