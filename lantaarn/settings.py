"""The one settings object: environment variables `LANTAARN_*`, nested with `__`."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

import platformdirs
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api import ApiConfig
from broker import client_context
from broker.command_service import CommandServiceConfig
from devices.scheduler import SchedulerConfig
from ingest import BrokerConfig, TimeRules, WorkerConfig
from ingest.decode import MAX_AGE_S, MAX_FUTURE_S
from ingest.rollups import RollupConfig
from ingest.source import RECEIVE_MAXIMUM
from simulators import BrokerAddress
from timeseries import InfluxConfig, Retention


class MqttSettings(BaseModel):
    """The broker: address and the ingest service's own login."""

    host: str = Field("::1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    session_expiry_s: int = Field(
        7 * 86400,
        ge=0,
        description="seconds an ingest worker's "
        "session (and its queued messages) outlives a disconnect",
    )
    tls: bool = Field(
        False, description="connect over TLS (1.2 or newer), checking the broker's name"
    )
    ca_file: Path | None = Field(
        None,
        description="PEM file of the CA that signed the broker's certificate (else the system's)",
    )
    cert_file: Path | None = Field(
        None, description="PEM client certificate, if the broker asks for one"
    )
    key_file: Path | None = Field(None, description="PEM key of `cert_file` (if not inside it)")

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for our MQTT clients, or None for plain MQTT."""
        if not self.tls:
            return None
        return client_context(self.ca_file, self.cert_file, self.key_file)


DURATION = r"^(INF|\d+[mhdw])$"  # an InfluxQL duration such as 90d, 104w or INF


class InfluxSettings(BaseModel):
    """InfluxDB through its v1-compatible HTTP API.

    With authentication on (every deployment), three logins: `username` writes (ingest), the
    `read_` login reads (the API), and the `admin_` login only sets the others up
    (`lantaarn influx-users`).
    """

    url: str = "http://[::1]:8086"
    database: str = "lantaarn"
    username: str | None = Field(None, description="the write login (ingest)")
    password: SecretStr | None = None
    token: SecretStr | None = None
    read_username: str | None = Field(
        None, description="the read-only login of the API (default: the write login)"
    )
    read_password: SecretStr | None = None
    admin_username: str | None = Field(
        None, description="InfluxDB's admin, for `lantaarn influx-users` only"
    )
    admin_password: SecretStr | None = None
    retention_raw: str = Field(
        "90d", pattern=DURATION, description="how long raw readings are kept"
    )
    retention_1m: str = Field(
        "104w", pattern=DURATION, description="how long 1-minute rollups are kept"
    )
    retention_1h: str = Field(
        "INF", pattern=DURATION, description="how long 1-hour rollups are kept"
    )


class IngestSettings(BaseModel):
    """The ingest workers."""

    workers: int = Field(1, ge=1, le=64, description="worker processes started by `ingest`")
    metrics_host: str = Field("::1", description="where `lantaarn ingest` serves /metrics")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="its port (worker N uses port + N); 0 for none"
    )
    share_group: str = Field(
        "lantaarn-ingest", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="MQTT shared subscription"
    )
    client_id_prefix: str = Field(
        "ingest", pattern=r"^[A-Za-z0-9_-]{1,40}$", description="workers are PREFIX-0, PREFIX-1, …"
    )
    batch_messages: int = Field(2000, ge=1, description="messages per batch at most")
    flush_interval_s: float = Field(0.1, gt=0, description="seconds a batch waits to fill")
    receive_maximum: int = Field(
        RECEIVE_MAXIMUM,
        ge=1,
        le=65_535,
        description="unacknowledged messages the broker may send us",
    )
    write_lines: int = Field(5000, ge=1, description="lines per InfluxDB write")
    max_future_s: float = Field(MAX_FUTURE_S, ge=0, description="how far ahead a timestamp may be")
    max_age_s: float = Field(MAX_AGE_S, gt=0, description="how old a reading may be")
    rollup_windows: list[Literal["1m", "1h"]] = Field(
        ["1m", "1h"], description="UTC-aligned windows to keep rollups of"
    )
    rollup_grace_s: float = Field(
        120.0, ge=0, description="how long after a window closes its rollup waits for stragglers"
    )

    def worker(self, index: int, workers: int | None = None) -> WorkerConfig:
        """The configuration of worker `index` of `workers` (default: the `workers` setting).

        Every tunable of the worker comes from here; WorkerConfig and RollupConfig hold no
        second default of their own.
        """
        return WorkerConfig(
            index=index,
            workers=self.workers if workers is None else workers,
            share_group=self.share_group,
            client_id_prefix=self.client_id_prefix,
            batch_messages=self.batch_messages,
            flush_interval_s=self.flush_interval_s,
            receive_maximum=self.receive_maximum,
            write_lines=self.write_lines,
            time_rules=TimeRules(
                self.max_future_s,
                self.max_age_s,
                late_after_s=self.rollup_grace_s + _smallest(self),
            ),
            rollups=RollupConfig(windows=tuple(self.rollup_windows), grace_s=self.rollup_grace_s),
        )


# The Dutch government's open base map (PDOK, BRT-Achtergrondkaart), in Web Mercator.
PDOK_BRT_TILES = (
    "https://service.pdok.nl/brt/achtergrondkaart/wmts/v2_0/standaard/EPSG:3857/{z}/{x}/{y}.png"
)
PDOK_BRT_ATTRIBUTION = "Kaartgegevens © Kadaster (PDOK, BRT-Achtergrondkaart)"


class ApiSettings(BaseModel):
    """The HTTP API."""

    hosts: list[str] = Field(["::1", "127.0.0.1"], description="addresses to listen on")
    port: int = Field(8000, ge=1, le=65535)
    cors_origins: list[str] = Field([], description="origins allowed to call the API")
    anonymous_read: bool = Field(
        False, description="whether callers without an API key may read telemetry and devices"
    )
    certfile: Path | None = Field(None, description="PEM certificate (chain): serve HTTPS only")
    keyfile: Path | None = Field(None, description="the certificate's PEM private key")
    trusted_proxies: list[str] = Field(
        [],
        description="addresses of TLS-terminating proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (none: those headers are ignored)",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+/?$",
        description="the base URL clients use, for absolute Link and Location headers "
        "(none: those carry paths)",
    )
    metrics_token: SecretStr | None = Field(
        None, description="a bearer token that may read /metrics only (admin keys may too)"
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="request body cap, bytes")
    max_import_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="body cap of the device import, bytes"
    )
    auth_failure_burst: int = Field(
        20, ge=1, description="failed key checks a client address may make at once"
    )
    auth_failure_refill_s: float = Field(
        6.0, gt=0, description="seconds until an address may fail once more"
    )
    map_tiles: str = Field(
        PDOK_BRT_TILES,
        pattern=r"^(https://[^\s\"'<>]*\{z\}[^\s\"'<>]*)?$",
        description="XYZ tile URL of the dashboard's base map, loaded by operators' browsers "
        "(https, with {z}, {x}, {y}); empty: the plain map, no network",
    )
    map_attribution: str = Field(
        PDOK_BRT_ATTRIBUTION, max_length=200, description="the base map's attribution text"
    )
    session_idle_minutes: float = Field(30, gt=0, description="dashboard session idle limit")
    session_max_hours: float = Field(12, gt=0, description="dashboard session absolute limit")


class DoctorSettings(BaseModel):
    """`lantaarn doctor`: its probe login and what it compares against."""

    username: str | None = Field(
        None,
        description="the probe's broker login (default: the ingest login); it needs client ids "
        "lantaarn-doctor, lantaarn-doctor-pub and lantaarn-doctor-sys, readwrite on "
        "lantaarn/doctor/# and read on $SYS/#",
    )
    password: SecretStr | None = None
    probe_messages: int = Field(
        1500, ge=1, description="QoS 1 messages queued for the probe's offline session"
    )
    broker_config: Path | None = Field(
        None, description="mosquitto.conf to read, when the doctor runs on the broker's host"
    )
    max_clock_skew_s: float = Field(2.0, gt=0, description="clock skew that is worth a warning")


class CommandSettings(BaseModel):
    """The command service (publishes commands, records answers), run inside the API's process."""

    enabled: bool = Field(False, description="run the command service in the API's process")
    username: str | None = Field(None, description="its broker login (role operator)")
    password: SecretStr | None = None
    client_id: str = Field(
        "lantaarn-commands-0",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="fixed per API replica: its persistent session holds answers while it is down",
    )
    share_group: str = Field(
        "lantaarn-commands",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="the shared subscription on cmd/ack that replicas split",
    )
    max_inflight: int = Field(20, ge=1, le=65535, description="QoS 1 publishes in flight at once")
    expiry_grace_s: float = Field(
        5.0, ge=0, description="seconds past a deadline before a command counts as expired"
    )
    retention_days: float = Field(400.0, gt=0, description="days the command audit trail is kept")


class SchedulerSettings(BaseModel):
    """The dimming scheduler (`lantaarn scheduler`, or inside the API's process)."""

    enabled: bool = Field(False, description="run the scheduler in the API's process")
    name: str = Field(
        "scheduler",
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="this scheduler's name in the lease and logs (a process token is added)",
    )
    tick_s: float = Field(15.0, gt=0, description="seconds between looks for due steps")
    lease_s: float = Field(60.0, gt=0, description="seconds the lease lasts unrenewed")
    deadline_s: float = Field(900.0, gt=0, description="a scheduled command's deadline (s)")
    batch: int = Field(500, ge=1, le=5000, description="lamps per sending transaction")

    @model_validator(mode="after")
    def _lease_outlasts_a_tick(self) -> SchedulerSettings:
        # A lease shorter than a tick runs out between rounds and lets a second scheduler in.
        if self.lease_s <= self.tick_s:
            raise ValueError("lease_s must be longer than tick_s")
        return self


class AlertSettings(BaseModel):
    """`LANTAARN_ALERTS__*`: the evaluator (`lantaarn alerts`) and its notification channels."""

    replica: str | None = Field(
        None, description="this evaluator's name for the lease; default host name and process id"
    )
    interval_s: float = Field(10.0, gt=0, le=60, description="seconds between rounds")
    lease_s: float = Field(30.0, gt=0, description="seconds a silent replica's lease lasts")
    public_url: str = Field(
        "http://localhost:8000", description="the API's public URL, linked from notifications"
    )
    webhook_url: str | None = Field(None, description="POST every notification here (JSON)")
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of the webhook signature (required with the URL)"
    )
    smtp_host: str | None = Field(None, description="send e-mail through this SMTP server")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_from: str = "lantaarn@localhost"
    smtp_to: list[str] = Field([], description="recipients of alert e-mail")
    smtp_language: Literal["nl", "en"] = "nl"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_require_tls: bool = Field(True, description="refuse to send unless STARTTLS is offered")
    smtp_ca_file: Path | None = Field(None, description="trust this CA for the SMTP server")
    alertmanager_url: str | None = Field(
        None, description="push alerts to this Prometheus Alertmanager (API v2)"
    )
    allow_internal_webhooks: bool = Field(
        False,
        description=(
            "let tenants' webhooks call loopback, private and other non-public addresses "
            "(off: a tenant cannot make the platform call inside its own network)"
        ),
    )


class Settings(BaseSettings):
    """Everything configurable, from the environment (`LANTAARN_MQTT__PORT=1884`)."""

    model_config = SettingsConfigDict(
        env_prefix="LANTAARN_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(
        Path(platformdirs.user_data_dir("lantaarn")),
        description="where the demo keeps its broker, database and registry",
    )
    registry_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the device registry; default a SQLite file under data_dir",
    )
    log_level: str = "INFO"
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    ingest: IngestSettings = IngestSettings()
    api: ApiSettings = ApiSettings()
    doctor: DoctorSettings = DoctorSettings()
    commands: CommandSettings = CommandSettings()
    scheduler: SchedulerSettings = SchedulerSettings()

    alerts: AlertSettings = AlertSettings()

    def registry(self) -> str:
        """The registry's SQLAlchemy URL."""
        if self.registry_url:
            return self.registry_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "registry.sqlite3"
        # Every tenant's devices and their password hashes: the owner's only (SQLite gives its
        # journal files the database's mode).
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        return f"sqlite:///{path}"

    def pki_dir(self) -> Path:
        """The folder of the deployment's certificate authority (`lantaarn pki`)."""
        return self.data_dir / "pki"

    def influx_config(self) -> InfluxConfig:
        """How the platform reaches InfluxDB."""
        i = self.influx
        return InfluxConfig(
            i.url,
            i.database,
            i.username,
            i.password.get_secret_value() if i.password else None,
            i.token.get_secret_value() if i.token else None,
        )

    def influx_read_config(self) -> InfluxConfig:
        """How the API reaches InfluxDB: the read login when one is set."""
        i = self.influx
        if i.read_username is None:
            return self.influx_config()
        return InfluxConfig(
            i.url,
            i.database,
            i.read_username,
            i.read_password.get_secret_value() if i.read_password else None,
            i.token.get_secret_value() if i.token else None,
        )

    def retention(self) -> Retention:
        """The retention tiers."""
        return Retention(
            self.influx.retention_raw, self.influx.retention_1m, self.influx.retention_1h
        )

    def broker(self) -> BrokerConfig:
        """How ingest reaches the broker."""
        m = self.mqtt
        return BrokerConfig(
            m.host,
            m.port,
            m.username,
            m.password.get_secret_value() if m.password else None,
            session_expiry_s=m.session_expiry_s,
            tls=m.tls_context(),
        )

    def broker_address(self) -> BrokerAddress:
        """How simulators reach the broker."""
        return BrokerAddress(self.mqtt.host, self.mqtt.port, tls=self.mqtt.tls_context())

    def worker(self, index: int, workers: int | None = None) -> WorkerConfig:
        """The configuration of ingest worker `index` of `workers` (default: the setting)."""
        return self.ingest.worker(index, workers)

    def api_config(self, collectors: tuple[Collector, ...] = ()) -> ApiConfig:
        """What the API needs (`collectors`: more metrics for its /metrics)."""
        return ApiConfig(
            self.registry(),
            self.influx_read_config(),
            cors_origins=tuple(self.api.cors_origins),
            anonymous_read=self.api.anonymous_read,
            collectors=collectors,
            public_url=self.api.public_url,
            map_tiles=self.api.map_tiles,
            map_attribution=self.api.map_attribution,
            max_body_bytes=self.api.max_body_bytes,
            max_import_bytes=self.api.max_import_bytes,
            auth_failure_burst=self.api.auth_failure_burst,
            auth_failure_refill_s=self.api.auth_failure_refill_s,
            metrics_token=(
                self.api.metrics_token.get_secret_value() if self.api.metrics_token else None
            ),
            session_idle_s=self.api.session_idle_minutes * 60,
            session_max_s=self.api.session_max_hours * 3600,
            pki_dir=self.pki_dir(),
            commands=self.command_service(),
            scheduler=self.scheduler_config() if self.scheduler.enabled else None,
            alert_webhooks_internal=self.alerts.allow_internal_webhooks,
        )

    def scheduler_config(self) -> SchedulerConfig:
        """How the dimming scheduler runs."""
        s = self.scheduler
        return SchedulerConfig(s.name, s.tick_s, s.lease_s, s.deadline_s, s.batch)

    def command_service(self) -> CommandServiceConfig | None:
        """The command service's configuration; None when it is not enabled."""
        c = self.commands
        if not c.enabled:
            return None
        return CommandServiceConfig(
            self.mqtt.host,
            self.mqtt.port,
            c.username,
            c.password.get_secret_value() if c.password else None,
            client_id=c.client_id,
            share_group=c.share_group,
            session_expiry_s=self.mqtt.session_expiry_s,
            max_inflight=c.max_inflight,
            expiry_grace_s=c.expiry_grace_s,
            retention_days=c.retention_days,
        )


def _smallest(ingest: IngestSettings) -> float:
    """The shortest rollup window in seconds (60 when none is kept)."""
    sizes = {"1m": 60.0, "15m": 900.0, "1h": 3600.0, "1d": 86400.0}
    return min((sizes[w] for w in ingest.rollup_windows), default=60.0)
