"""The registry of tenants and devices, stored through SQLAlchemy (SQLite or PostgreSQL).

The schema is Alembic's (devices/migrations); `Registry.open()` brings any database up to date.
Every writing transaction first bumps the one `registry_state` row: that orders concurrent
writers (its row lock) and gives readers a cheap fingerprint of the whole registry.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    and_,
    create_engine,
    event,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from devices.catalogue import DEVICE_KINDS
from devices.errors import Conflict, ImportRejected, InvalidDevice, NotFound, Problem
from devices.ipv6 import check_device_address, parse_prefix
from devices.model import BoundingBox, BrokerLogin, Device, Tenant
from devices.topics import DEVICE_ID_RE, TENANT_RE

log = logging.getLogger(__name__)

MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same for every process migrating one database.
_MIGRATION_LOCK: Final = 0x6C616E74
_CHUNK: Final = 500  # ids per IN (...) query; far below every driver's parameter limit

Status = Literal["active", "retired"]


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
    # The registry revision of the device's last change (for incremental readers).
    revision: Mapped[int] = mapped_column(Integer, index=True, default=0)
    broker_password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)


class _StateRow(_Base):
    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    device_count: Mapped[int] = mapped_column(BigInteger)


# The device properties an update may change; id, tenant and the lifecycle stamps stay.
UPDATABLE: Final = frozenset(
    {
        "kind",
        "extra_kinds",
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
    }
)
_LIMITS: Final = {"name": 200, "firmware": 100, "owner": 200}
# Property names as the API and the files spell them, for messages.
PUBLIC_NAMES: Final = {
    "device_id": "deviceId",
    "extra_kinds": "extraKinds",
    "ipv6_address": "ipv6Address",
    "interval_s": "intervalSeconds",
    "installed_on": "installedOn",
    "retired_at": "retiredAt",
    "observation_goal": "observationGoal",
    "legal_ground": "legalGround",
    "personal_data": "personalData",
    "active_until": "activeUntil",
}


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


def _row_values(device: Device) -> dict[str, Any]:
    """The columns of a device, with its IPv6 address in canonical (compressed) form."""
    values = {f.name: getattr(device, f.name) for f in fields(Device)}
    values["extra_kinds"] = json.dumps(list(device.extra_kinds))
    values["ipv6_address"] = _canonical(device.ipv6_address)
    return values


def _tenant(row: _TenantRow) -> Tenant:
    return Tenant(row.code, row.name, tuple(json.loads(row.ipv6_prefixes)))


def tenant_problems(tenant: Tenant) -> list[Problem]:
    """Every rule the tenant breaks (empty when it is fine)."""
    found = []
    if not TENANT_RE.fullmatch(tenant.code):
        found.append(
            Problem("code", f"tenant code {tenant.code!r} must match [A-Za-z0-9_-]{{1,32}}")
        )
    if not tenant.name.strip():
        found.append(Problem("name", "tenant name is empty"))
    elif len(tenant.name) > 200:
        found.append(Problem("name", "tenant name is longer than 200 characters"))
    for prefix in tenant.ipv6_prefixes:
        try:
            parse_prefix(prefix)
        except InvalidDevice as exc:
            found.append(Problem("ipv6Prefixes", exc.message))
    return found


def validate_tenant(tenant: Tenant) -> None:
    """Raise InvalidDevice (listing every problem) when the tenant breaks a rule."""
    if found := tenant_problems(tenant):
        raise InvalidDevice.of(found)


def device_problems(device: Device, tenant: Tenant | None) -> list[Problem]:
    """Every rule the device breaks, against its tenant (None: the tenant does not exist)."""
    found: list[Problem] = []
    if not DEVICE_ID_RE.fullmatch(device.device_id):
        found.append(
            Problem(
                "deviceId",
                f"device id {device.device_id!r} must match [a-z0-9][a-z0-9-]{{0,62}}",
            )
        )
    if tenant is None:
        found.append(Problem("tenant", f"tenant {device.tenant!r} does not exist"))
    for name, kind in (("kind", device.kind), *(("extraKinds", k) for k in device.extra_kinds)):
        if kind not in DEVICE_KINDS:
            found.append(
                Problem(
                    name, f"unknown device kind {kind!r}; known: {', '.join(sorted(DEVICE_KINDS))}"
                )
            )
    if not device.name.strip():
        found.append(Problem("name", "the name is empty"))
    for attribute, limit in _LIMITS.items():
        value = getattr(device, attribute)
        if value is not None and len(value) > limit:
            found.append(Problem(attribute, f"{attribute} is longer than {limit} characters"))
    if not -90.0 <= device.latitude <= 90.0:
        found.append(Problem("latitude", f"latitude {device.latitude} is outside -90..90"))
    if not -180.0 <= device.longitude <= 180.0:
        found.append(Problem("longitude", f"longitude {device.longitude} is outside -180..180"))
    if device.interval_s is not None and not (
        device.interval_s > 0 and math.isfinite(device.interval_s)
    ):
        found.append(
            Problem("intervalSeconds", f"the reporting interval {device.interval_s} must be > 0 s")
        )
    if (
        device.installed_on is not None
        and device.active_until is not None
        and device.active_until < device.installed_on
    ):
        found.append(Problem("activeUntil", "activeUntil is before installedOn"))
    if device.ipv6_address is not None and tenant is not None:
        try:
            check_device_address(device.ipv6_address, tenant.ipv6_prefixes, tenant=tenant.code)
        except InvalidDevice as exc:
            found.append(Problem("ipv6Address", exc.message))
    return found


def validate_device(device: Device, tenant: Tenant) -> None:
    """Raise InvalidDevice (listing every problem) when the device breaks a rule."""
    if found := device_problems(device, tenant):
        raise InvalidDevice.of(found)


def migrate(connection: Connection) -> None:
    """Bring the registry's schema on `connection` to the newest revision (in its transaction)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    names = set(inspect(connection).get_table_names())
    if "tenants" in names and "alembic_version" not in names:
        # Made by create_all before we had migrations: that layout is revision 0001.
        log.info("registry predates migrations; marking it as revision 0001")
        command.stamp(config, "0001")
    command.upgrade(config, "head")


def connect(url: str) -> Engine:
    """An engine for the registry's database; SQLite gets WAL, foreign keys and a busy wait
    (the API, workers and commands open the same file at once)."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    return engine


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
        """Connect and migrate the schema to the newest revision."""
        engine = connect(self.url)

        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Several replicas may start at once; one migrates, the others wait.
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                    )
                migrate(connection)
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def close(self) -> None:
        """Release the connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._sessions = None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        if self._sessions is None:
            raise RuntimeError("the registry is not open")
        with self._sessions.begin() as session:
            yield session

    @staticmethod
    def _bump(session: Session) -> int:
        """Take the writers' lock (the state row) and return this transaction's revision."""
        session.execute(
            update(_StateRow).where(_StateRow.id == 1).values(revision=_StateRow.revision + 1)
        )
        return int(session.scalars(select(_StateRow.revision).where(_StateRow.id == 1)).one())

    @staticmethod
    def _count(session: Session, delta: int) -> None:
        session.execute(
            update(_StateRow)
            .where(_StateRow.id == 1)
            .values(device_count=_StateRow.device_count + delta)
        )

    def ping(self) -> None:
        """Raise when the database does not answer."""
        with self._session() as session:
            session.execute(select(1))

    # -- tenants ---------------------------------------------------------------------------------

    def add_tenant(self, tenant: Tenant) -> Tenant:
        """Store a new tenant; Conflict when its code is taken."""
        validate_tenant(tenant)
        prefixes = tuple(str(parse_prefix(p)) for p in tenant.ipv6_prefixes)
        tenant = replace(tenant, ipv6_prefixes=prefixes)
        try:
            with self._session() as session:
                self._bump(session)
                if session.get(_TenantRow, tenant.code) is not None:
                    raise Conflict("tenant", tenant.code)
                session.add(
                    _TenantRow(
                        code=tenant.code, name=tenant.name, ipv6_prefixes=json.dumps(list(prefixes))
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

    def tenants(
        self,
        *,
        after: str | None = None,
        limit: int | None = None,
        codes: Collection[str] | None = None,
    ) -> list[Tenant]:
        """Tenants by code, starting after code `after`; only `codes` when given."""
        query = select(_TenantRow).order_by(_TenantRow.code)
        if codes is not None:
            query = query.where(_TenantRow.code.in_(sorted(codes)))
        if after is not None:
            query = query.where(_TenantRow.code > after)
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            return [_tenant(r) for r in session.scalars(query)]

    # -- devices ---------------------------------------------------------------------------------

    def add_devices(
        self,
        devices: Sequence[Device],
        *,
        password_hashes: Mapping[str, str] | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        """Store new devices, all or none.

        `password_hashes` maps device ids to their Mosquitto password hash. With `labels` (where
        each device came from, such as "line 4") every problem is reported as ImportRejected;
        without, one device whose id is taken gives Conflict, anything else InvalidDevice.
        """
        if labels is not None and len(labels) != len(devices):
            raise ValueError("labels must name every device")
        hashes = password_hashes or {}
        with self._session() as session:
            revision = self._bump(session)
            found = self._problems_of_new(session, devices, labels)
            if found:
                if labels is not None:
                    raise ImportRejected.of(found)
                if len(devices) == 1 and any(p.reason.endswith("already exists") for p in found):
                    # Sending the same device twice is the usual way to get here: say so first.
                    raise Conflict("device", devices[0].device_id)
                raise InvalidDevice.of(found)
            now = datetime.now(UTC)
            for device in devices:
                values = _row_values(device)
                values["created_at"] = device.created_at or now
                session.add(
                    _DeviceRow(
                        **values,
                        revision=revision,
                        broker_password_hash=hashes.get(device.device_id),
                    )
                )
            self._count(session, len(devices))
            try:
                session.flush()
            except IntegrityError:
                # Another writer got there between our checks and our insert.
                raise Conflict("device", ", ".join(d.device_id for d in devices)) from None

    def _problems_of_new(
        self, session: Session, devices: Sequence[Device], labels: Sequence[str] | None
    ) -> list[Problem]:
        tenants = {
            row.code: _tenant(row)
            for row in session.scalars(
                select(_TenantRow).where(_TenantRow.code.in_({d.tenant for d in devices}))
            )
        }
        ids = [d.device_id for d in devices]
        taken = {value for value, _ in _existing(session, _DeviceRow.device_id, ids)}
        addresses = {
            _canonical(d.ipv6_address): d.device_id for d in devices if d.ipv6_address is not None
        }
        used = dict(
            _existing(session, _DeviceRow.ipv6_address, [a for a in addresses if a is not None])
        )
        seen_ids: dict[str, str] = {}
        seen_addresses: dict[str, str] = {}
        found: list[Problem] = []
        for index, device in enumerate(devices):
            where = labels[index] if labels is not None else None
            label = where or device.device_id
            own = device_problems(device, tenants.get(device.tenant))
            if device.device_id in taken:
                own.append(Problem("deviceId", f"device {device.device_id!r} already exists"))
            elif device.device_id in seen_ids:
                own.append(
                    Problem(
                        "deviceId",
                        f"device id {device.device_id!r} repeats {seen_ids[device.device_id]}",
                    )
                )
            seen_ids.setdefault(device.device_id, label)
            address = _canonical(device.ipv6_address)
            if address is not None:
                if address in used:
                    own.append(
                        Problem("ipv6Address", f"{address} is already device {used[address]}'s")
                    )
                elif address in seen_addresses:
                    own.append(
                        Problem("ipv6Address", f"{address} repeats {seen_addresses[address]}")
                    )
                seen_addresses.setdefault(address, label)
            found.extend(replace(p, where=where) for p in own)
        return found

    def check_new(self, devices: Sequence[Device], labels: Sequence[str]) -> list[Problem]:
        """The problems `add_devices` would find with these devices, without storing any."""
        with self._session() as session:
            return self._problems_of_new(session, devices, labels)

    def add_device(self, device: Device, *, password_hash: str | None = None) -> Device:
        """Store one new device (with its broker password hash, if given)."""
        hashes = {device.device_id: password_hash} if password_hash is not None else None
        self.add_devices([device], password_hashes=hashes)
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
        status: Status | None = None,
        bbox: BoundingBox | None = None,
        after: str | None = None,
        limit: int | None = None,
        include_retired: bool = True,
    ) -> list[Device]:
        """Devices ordered by id, filtered, starting after id `after`.

        `kind` matches the device's main kind; `status` is active (not retired) or retired;
        `bbox` keeps devices inside the box, edges included.
        """
        query = select(_DeviceRow).order_by(_DeviceRow.device_id)
        if tenants is not None:
            query = query.where(_DeviceRow.tenant.in_(list(tenants)))
        if kind is not None:
            query = query.where(_DeviceRow.kind == kind)
        if after is not None:
            query = query.where(_DeviceRow.device_id > after)
        if status == "retired":
            query = query.where(_DeviceRow.retired_at.is_not(None))
        if status == "active" or not include_retired:
            query = query.where(_DeviceRow.retired_at.is_(None))
        if bbox is not None:
            query = query.where(_DeviceRow.latitude.between(bbox.min_lat, bbox.max_lat))
            if bbox.min_lon <= bbox.max_lon:
                query = query.where(_DeviceRow.longitude.between(bbox.min_lon, bbox.max_lon))
            else:
                query = query.where(
                    or_(_DeviceRow.longitude >= bbox.min_lon, _DeviceRow.longitude <= bbox.max_lon)
                )
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            return [_device(r) for r in session.scalars(query)]

    def update(self, device_id: str, changes: Mapping[str, object]) -> Device:
        """Change some properties of a device (snake_case names of `Device`); id and tenant stay."""
        refused = sorted(set(changes) - UPDATABLE)
        if refused:
            raise InvalidDevice.of(
                [
                    Problem(PUBLIC_NAMES.get(n, n), f"{PUBLIC_NAMES.get(n, n)} cannot be changed")
                    for n in refused
                ]
            )
        with self._session() as session:
            revision = self._bump(session)
            row = session.get(_DeviceRow, device_id)
            if row is None:
                raise NotFound("device", device_id)
            tenant_row = session.get(_TenantRow, row.tenant)
            device = replace(_device(row), **changes)  # type: ignore[arg-type]
            found = device_problems(device, _tenant(tenant_row) if tenant_row else None)
            address = _canonical(device.ipv6_address)
            if address is not None and address != row.ipv6_address:
                other = session.scalars(
                    select(_DeviceRow.device_id).where(
                        and_(_DeviceRow.ipv6_address == address, _DeviceRow.device_id != device_id)
                    )
                ).first()
                if other is not None:
                    found.append(Problem("ipv6Address", f"{address} is already device {other}'s"))
            if found:
                raise InvalidDevice.of(found)
            values = _row_values(device)
            for name in UPDATABLE:
                setattr(row, name, values[name])
            row.revision = revision
            return _device(row)

    def retire(self, device_id: str, when: datetime | None = None) -> Device:
        """Mark a device retired and drop its broker login; retiring twice changes nothing."""
        with self._session() as session:
            revision = self._bump(session)
            row = session.get(_DeviceRow, device_id)
            if row is None:
                raise NotFound("device", device_id)
            if row.retired_at is None:
                row.retired_at = when or datetime.now(UTC)
                row.broker_password_hash = None
                row.revision = revision
            return _device(row)

    # -- broker logins ---------------------------------------------------------------------------

    def set_password_hash(self, device_id: str, password_hash: str) -> BrokerLogin:
        """Give an active device a new broker password (as its Mosquitto hash)."""
        with self._session() as session:
            revision = self._bump(session)
            row = session.get(_DeviceRow, device_id)
            if row is None:
                raise NotFound("device", device_id)
            if row.retired_at is not None:
                raise InvalidDevice(
                    f"device {device_id!r} is retired; it gets no broker login", field="deviceId"
                )
            row.broker_password_hash = password_hash
            row.revision = revision
            return BrokerLogin(row.tenant, row.device_id, password_hash)

    def broker_logins(self) -> list[BrokerLogin]:
        """The broker logins of every active device that has one, by device id."""
        query = (
            select(_DeviceRow.tenant, _DeviceRow.device_id, _DeviceRow.broker_password_hash)
            .where(_DeviceRow.retired_at.is_(None), _DeviceRow.broker_password_hash.is_not(None))
            .order_by(_DeviceRow.device_id)
        )
        with self._session() as session:
            return [BrokerLogin(t, d, str(h)) for t, d, h in session.execute(query)]

    def revision(self) -> tuple[int, int]:
        """A cheap fingerprint of the registry: (revision, device count); any change moves it."""
        with self._session() as session:
            row = session.execute(
                select(_StateRow.revision, _StateRow.device_count).where(_StateRow.id == 1)
            ).one_or_none()
            return (0, 0) if row is None else (int(row[0]), int(row[1]))


def _canonical(address: str | None) -> str | None:
    """The compressed form of an IP address, or the text as given when it is not one."""
    if address is None:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _existing(session: Session, column: Any, values: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(value, device id) of the devices whose `column` is one of `values`."""
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        query = select(column, _DeviceRow.device_id).where(column.in_(chunk))
        for value, device_id in session.execute(query):
            yield str(value), str(device_id)
