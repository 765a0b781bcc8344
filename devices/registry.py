"""The registry of tenants and devices, stored through SQLAlchemy (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from types import TracebackType

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from devices.catalogue import DEVICE_KINDS
from devices.errors import Conflict, InvalidDevice, NotFound
from devices.ipv6 import check_device_address, parse_prefix
from devices.model import Device, Tenant
from devices.topics import DEVICE_ID_RE, TENANT_RE

log = logging.getLogger(__name__)


class _Base(DeclarativeBase):
    pass


class _TenantRow(_Base):
    __tablename__ = "tenants"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    ipv6_prefixes: Mapped[str] = mapped_column(Text, default="[]")  # JSON list


class _DeviceRow(_Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.code"), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    ipv6_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    interval_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    extra_kinds: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    firmware: Mapped[str | None] = mapped_column(String(100), nullable=True)
    installed_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    observation_goal: Mapped[str | None] = mapped_column(Text, nullable=True)
    legal_ground: Mapped[str | None] = mapped_column(Text, nullable=True)
    personal_data: Mapped[bool] = mapped_column(Boolean, default=False)
    active_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # A counter bumped on every change lets readers of the whole registry notice changes cheaply.
    revision: Mapped[int] = mapped_column(Integer, index=True, default=0)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _device(row: _DeviceRow) -> Device:
    return Device(
        device_id=row.device_id,
        tenant=row.tenant,
        kind=row.kind,
        name=row.name,
        latitude=row.latitude,
        longitude=row.longitude,
        ipv6_address=row.ipv6_address,
        interval_s=row.interval_s,
        extra_kinds=tuple(json.loads(row.extra_kinds)),
        firmware=row.firmware,
        installed_on=row.installed_on,
        retired_at=_aware(row.retired_at),
        owner=row.owner,
        observation_goal=row.observation_goal,
        legal_ground=row.legal_ground,
        personal_data=row.personal_data,
        active_until=row.active_until,
        created_at=_aware(row.created_at),
    )


def _tenant(row: _TenantRow) -> Tenant:
    return Tenant(row.code, row.name, tuple(json.loads(row.ipv6_prefixes)))


def validate_tenant(tenant: Tenant) -> None:
    """Raise InvalidDevice when the tenant breaks a rule."""
    if not TENANT_RE.fullmatch(tenant.code):
        raise InvalidDevice(
            f"tenant code {tenant.code!r} must match [A-Za-z0-9_-]{{1,32}}", field="code"
        )
    if not tenant.name.strip():
        raise InvalidDevice("tenant name is empty", field="name")
    for prefix in tenant.ipv6_prefixes:
        parse_prefix(prefix)


def validate_device(device: Device, tenant: Tenant) -> None:
    """Raise InvalidDevice when the device breaks a rule (against its tenant)."""
    if not DEVICE_ID_RE.fullmatch(device.device_id):
        raise InvalidDevice(
            f"device id {device.device_id!r} must match [a-z0-9][a-z0-9-]{{0,62}}", field="deviceId"
        )
    for kind in (device.kind, *device.extra_kinds):
        if kind not in DEVICE_KINDS:
            raise InvalidDevice(
                f"unknown device kind {kind!r}; known: {', '.join(sorted(DEVICE_KINDS))}",
                field="kind",
            )
    if not -90.0 <= device.latitude <= 90.0:
        raise InvalidDevice(f"latitude {device.latitude} is outside -90..90", field="latitude")
    if not -180.0 <= device.longitude <= 180.0:
        raise InvalidDevice(f"longitude {device.longitude} is outside -180..180", field="longitude")
    if device.interval_s is not None and not device.interval_s > 0:
        raise InvalidDevice("the reporting interval must be positive", field="intervalSeconds")
    if device.ipv6_address is not None:
        check_device_address(device.ipv6_address, tenant.ipv6_prefixes)


class Registry:
    """Tenants and devices in a relational database; use as a context manager."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None

    def __enter__(self) -> Registry:
        self.open()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect and create the schema when it is missing."""
        engine = create_engine(self.url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine, "connect")
            def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
                cur = conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=5000")
                cur.close()

        _Base.metadata.create_all(engine)
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def close(self) -> None:
        """Release the connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        if self._sessions is None:
            raise RuntimeError("the registry is not open")
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        """Raise when the database does not answer."""
        with self._session() as session:
            session.execute(select(1))

    # -- tenants ---------------------------------------------------------------------------------

    def add_tenant(self, tenant: Tenant) -> Tenant:
        """Store a new tenant."""
        validate_tenant(tenant)
        try:
            with self._session() as session:
                session.add(
                    _TenantRow(
                        code=tenant.code,
                        name=tenant.name,
                        ipv6_prefixes=json.dumps(list(tenant.ipv6_prefixes)),
                    )
                )
        except IntegrityError:
            raise Conflict("tenant", tenant.code) from None
        return tenant

    def tenant(self, code: str) -> Tenant:
        """The tenant with CBS code `code`."""
        with self._session() as session:
            row = session.get(_TenantRow, code)
            if row is None:
                raise NotFound("tenant", code)
            return _tenant(row)

    def tenants(self) -> list[Tenant]:
        """All tenants, by code."""
        with self._session() as session:
            rows = session.scalars(select(_TenantRow).order_by(_TenantRow.code))
            return [_tenant(r) for r in rows]

    # -- devices ---------------------------------------------------------------------------------

    def _next_revision(self, session: Session) -> int:
        return int(session.scalar(select(func.coalesce(func.max(_DeviceRow.revision), 0))) or 0) + 1

    def add_devices(self, devices: Sequence[Device]) -> None:
        """Store new devices, all or none."""
        with self._session() as session:
            tenants: dict[str, Tenant] = {}
            revision = self._next_revision(session)
            for device in devices:
                if device.tenant not in tenants:
                    row = session.get(_TenantRow, device.tenant)
                    if row is None:
                        raise InvalidDevice(
                            f"tenant {device.tenant!r} does not exist", field="tenant"
                        )
                    tenants[device.tenant] = _tenant(row)
                validate_device(device, tenants[device.tenant])
                if session.get(_DeviceRow, device.device_id) is not None:
                    raise Conflict("device", device.device_id)
                session.add(
                    _DeviceRow(
                        device_id=device.device_id,
                        tenant=device.tenant,
                        kind=device.kind,
                        name=device.name,
                        latitude=device.latitude,
                        longitude=device.longitude,
                        ipv6_address=device.ipv6_address,
                        interval_s=device.interval_s,
                        extra_kinds=json.dumps(list(device.extra_kinds)),
                        firmware=device.firmware,
                        installed_on=device.installed_on,
                        retired_at=device.retired_at,
                        owner=device.owner,
                        observation_goal=device.observation_goal,
                        legal_ground=device.legal_ground,
                        personal_data=device.personal_data,
                        active_until=device.active_until,
                        created_at=device.created_at or datetime.now(UTC),
                        revision=revision,
                    )
                )
            try:
                session.flush()
            except IntegrityError:
                raise Conflict("device", ", ".join(d.device_id for d in devices)) from None

    def add_device(self, device: Device) -> Device:
        """Store one new device."""
        self.add_devices([device])
        return self.device(device.device_id)

    def device(self, device_id: str) -> Device:
        """The device with id `device_id`."""
        with self._session() as session:
            row = session.get(_DeviceRow, device_id)
            if row is None:
                raise NotFound("device", device_id)
            return _device(row)

    def devices(
        self,
        *,
        tenants: Sequence[str] | None = None,
        kind: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        include_retired: bool = True,
    ) -> list[Device]:
        """Devices ordered by id, filtered, starting after id `after`."""
        query = select(_DeviceRow).order_by(_DeviceRow.device_id)
        if tenants is not None:
            query = query.where(_DeviceRow.tenant.in_(list(tenants)))
        if kind is not None:
            query = query.where(_DeviceRow.kind == kind)
        if after is not None:
            query = query.where(_DeviceRow.device_id > after)
        if not include_retired:
            query = query.where(_DeviceRow.retired_at.is_(None))
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            return [_device(r) for r in session.scalars(query)]

    def retire(self, device_id: str, when: datetime | None = None) -> Device:
        """Mark a device retired: it may no longer publish."""
        with self._session() as session:
            row = session.get(_DeviceRow, device_id)
            if row is None:
                raise NotFound("device", device_id)
            row.retired_at = when or datetime.now(UTC)
            row.revision = self._next_revision(session)
            return _device(row)

    def update(self, device: Device) -> Device:
        """Replace a device's description (its id and tenant stay)."""
        with self._session() as session:
            row = session.get(_DeviceRow, device.device_id)
            if row is None:
                raise NotFound("device", device.device_id)
            tenant_row = session.get(_TenantRow, row.tenant)
            assert tenant_row is not None
            device = replace(device, tenant=row.tenant)
            validate_device(device, _tenant(tenant_row))
            for name in (
                "kind",
                "name",
                "latitude",
                "longitude",
                "ipv6_address",
                "interval_s",
                "firmware",
                "installed_on",
                "owner",
                "observation_goal",
                "legal_ground",
                "personal_data",
                "active_until",
            ):
                setattr(row, name, getattr(device, name))
            row.extra_kinds = json.dumps(list(device.extra_kinds))
            row.revision = self._next_revision(session)
            return _device(row)

    def revision(self) -> tuple[int, int]:
        """A cheap fingerprint of the device table: (highest revision, row count)."""
        with self._session() as session:
            top, count = session.execute(
                select(func.coalesce(func.max(_DeviceRow.revision), 0), func.count())
            ).one()
            return int(top), int(count)
