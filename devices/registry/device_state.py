"""Each device's last reading and status, kept beside the registry so that one tenant's page of
them costs the same whatever the size of the fleet.

The ingest workers write it (`record_states`, in batches, every second or so): the newest
reading of each device (time and metric values), the last will (`online`/`offline` and its
time), and how many readings and rejections each tenant had per minute. Several workers share
the load, so every write is an upsert that keeps the newer time: a worker that is behind never
moves a device backwards. The API reads it: a page of devices with their state, status counts
per tenant and kind (one aggregate query), the longest silent, what changed since a position
(as stored, for the change feeds of /v1/events, whose status boards decide the status:
api/status_board.py), every device's place and status for the map.

A device's status is decided when read, from its state and its reporting interval: `offline`
when its last will said so after its last reading, `silent` after `SILENT_AFTER_INTERVALS`
intervals without a reading, else `online`. Created by the migration l0007.

Reading what changed (`state_changes`, for /v1/events): every write stamps the rows it changes
(`changed_ns`) with one stamp per transaction, taken from the one-row `device_state_clock`
(migration e0009) as the transaction's first statement: max(the writer's clock, the last stamp
+ 1). Updating that row locks it until the transaction ends, so writers take stamps one after
another, each after the previous one committed: stamps increase in commit order. A reader that
has read every change up to a stamp therefore never finds a later commit below it, and can read
changes as soon as they are committed, in (stamp, device id) order, from wherever it got to.
(Before e0009 the stamp was the writer's clock before its commit, so a reader had to wait until a
change was some seconds old, and a device rewritten more often than that was never read.)
The lock orders only the device-state writers (the workers' flushes, about one a second each,
and the API keeping what it found in InfluxDB); the rest of the registry never waits for it.

Why here and not elsewhere: InfluxDB's newest point per series is a scan of every series of the
tenant per request (what this replaces). An in-memory copy in each API replica, fed by its own
MQTT subscription, would make every replica decode the whole fleet's telemetry again, show
readings the workers rejected unless it validated them too, start empty after each restart,
and answer differently per replica. A table beside the registry survives restarts, is the same
for every replica and worker, is indexed for one tenant's page and counted by SQL aggregates,
and costs one upsert per changed device per flush (bench/results/latest_scale.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from devices.catalogue import DEVICE_KINDS
from devices.model import BoundingBox, Device
from devices.registry.alert_rows import alerts as alert_table
from devices.registry.devices import in_box
from devices.registry.rows import Base, DeviceRow, StateRow, device_of
from devices.registry.store import Store

SILENT_AFTER_INTERVALS: Final = 3  # readings missed before a device counts as silent
_NS: Final = 1_000_000_000
_CHUNK: Final = 500  # rows per upsert statement (far below every driver's parameter limit)

LiveStatus = Literal["online", "offline", "silent"]
Position = tuple[int, str]  # (change stamp, device id): how far a reader of changes has got
# A changed device's state without its values, as a change index holds it: id, newest
# reading's time (ns), last will (online/offline) and its time, and the change's stamp.
StateChange = tuple[str, int | None, str | None, int | None, int]
# A device's state row as stored: id, newest reading's time (ns), that reading's values as the
# JSON object stored, last will and its time, and the stamp of its last change.
StateRecord = tuple[str, int | None, str, str | None, int | None, int]
# A device as a status board needs it (api/status_board.py): id, tenant, kind, own reporting
# interval (s), retired (1) or not (0), then its state: newest reading's time, last will and its
# time, change stamp (None when never seen).
StatusRow = tuple[str, str, str, float | None, int, int | None, str | None, int | None, int | None]

# What the change indexes hold of a device's state beside its id and stamp (migration g0011).
CHANGE_INDEX_STATE: Final = ("last_ns", "status", "status_ns")

device_state = Table(
    "device_state",
    Base.metadata,
    Column("device_id", String(63), primary_key=True),
    Column("tenant", String(32), nullable=False),
    Column("last_ns", BigInteger, nullable=True),  # the newest reading's time
    Column("metrics", Text, nullable=False),  # JSON object: that reading's values
    Column("status", String(8), nullable=True),  # the last will: online / offline
    Column("status_ns", BigInteger, nullable=True),
    Column("changed_ns", BigInteger, nullable=False),  # the stamp of the row's last change
    # In the order changes are read (stamp, then id): a reader's next batch is the range after
    # its position, read in index order, no sort (widened by migration f0010). With the state
    # but its values: a change feed reads the batch from the index alone (g0011), a few
    # neighbouring pages at the index's end rather than a table page per changed device.
    Index(
        "ix_device_state_tenant_changed",
        "tenant",
        "changed_ns",
        "device_id",
        *CHANGE_INDEX_STATE,
    ),
    Index("ix_device_state_changed", "changed_ns", "device_id", *CHANGE_INDEX_STATE),
)

# One row (id 1): the last change stamp given. Writers update it first (see the module's doc).
device_state_clock = Table(
    "device_state_clock",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("stamp_ns", BigInteger, nullable=False),
)

tenant_minutes = Table(
    "tenant_minutes",
    Base.metadata,
    Column("tenant", String(32), primary_key=True),
    Column("minute_ns", BigInteger, primary_key=True),
    Column("readings", BigInteger, nullable=False),
    Column("rejections", BigInteger, nullable=False),
)


@dataclass(frozen=True, slots=True)
class ReadingUpdate:
    """A device's newest reading as a worker saw it: time (ns) and metric values."""

    device_id: str
    tenant: str
    ts_ns: int
    metrics: Mapping[str, float]

    def __init__(self, device_id: str, tenant: str, ts_ns: int, metrics: Mapping[str, float]):
        # A worker makes one per changed device per flush: the slots' own setters cost a third
        # of the frozen dataclass's generated __init__ (object.__setattr__ per field).
        _set_device_id(self, device_id)
        _set_tenant(self, tenant)
        _set_ts_ns(self, ts_ns)
        _set_metrics(self, metrics)


_set_device_id = ReadingUpdate.__dict__["device_id"].__set__
_set_tenant = ReadingUpdate.__dict__["tenant"].__set__
_set_ts_ns = ReadingUpdate.__dict__["ts_ns"].__set__
_set_metrics = ReadingUpdate.__dict__["metrics"].__set__


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A device's last will or birth message: `online` or `offline` at `at_ns`."""

    device_id: str
    tenant: str
    state: str
    at_ns: int


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What is known of a device now: its newest reading and its last will, with times (ns)."""

    last_ns: int | None = None
    metrics: Mapping[str, float] | None = None
    status: str | None = None
    status_ns: int | None = None
    changed_ns: int = 0


@dataclass(frozen=True, slots=True)
class StatusCount:
    """Active devices of one tenant and kind, by status."""

    tenant: str
    kind: str
    total: int
    online: int
    offline: int
    silent: int


@dataclass(frozen=True, slots=True)
class DevicePositions:
    """Active devices, column-wise in device-id order: where each is (WGS84 degrees) and its
    status. Lists rather than an object per device: a city's map asks for 150,000 at once."""

    device_ids: list[str]
    names: list[str]
    tenants: list[str]
    kinds: list[str]
    longitudes: list[float]
    latitudes: list[float]
    statuses: list[LiveStatus]


def live_status(device: Device, state: DeviceState | None, now_ns: int) -> LiveStatus:
    """offline (its last will said so after its last reading), silent (no reading for
    SILENT_AFTER_INTERVALS reporting intervals), else online."""
    last = state.last_ns if state is not None else None
    if (
        state is not None
        and state.status == "offline"
        and state.status_ns is not None
        and (last is None or state.status_ns >= last)
    ):
        return "offline"
    interval = device.interval_s or DEVICE_KINDS[device.kind].interval_s
    if last is None or now_ns - last > SILENT_AFTER_INTERVALS * interval * _NS:
        return "silent"
    return "online"


def _interval_s() -> ColumnElement[Any]:
    """A device's reporting interval in SQL: its own, else its kind's."""
    defaults = case(
        {name: kind.interval_s for name, kind in DEVICE_KINDS.items()},
        value=DeviceRow.kind,
        else_=60.0,
    )
    return func.coalesce(DeviceRow.interval_s, defaults)


def _offline() -> ColumnElement[bool]:
    s = device_state.c
    return and_(
        s.status == "offline",
        s.status_ns.is_not(None),
        or_(s.last_ns.is_(None), s.status_ns >= s.last_ns),
    )


def _silent(now_ns: int) -> ColumnElement[bool]:
    s = device_state.c
    return or_(
        s.last_ns.is_(None),
        s.last_ns < literal(now_ns, BigInteger) - _interval_s() * (SILENT_AFTER_INTERVALS * _NS),
    )


def _state_of(row: Any) -> DeviceState | None:
    if row.changed_ns is None:
        return None
    return DeviceState(
        row.last_ns, orjson.loads(row.metrics), row.status, row.status_ns, row.changed_ns
    )


# What a live answer needs of a device and its state, selected as plain rows and read by
# position: a page of them is read without ORM objects, datetimes or the registry's paperwork
# columns (building those was two thirds of the cost of a page).
_LIVE_COLUMNS: Final = (
    DeviceRow.device_id,
    DeviceRow.tenant,
    DeviceRow.kind,
    DeviceRow.name,
    DeviceRow.latitude,
    DeviceRow.longitude,
    DeviceRow.interval_s,
    DeviceRow.extra_kinds,
    DeviceRow.personal_data,
    device_state.c.last_ns,
    device_state.c.metrics,
    device_state.c.status,
    device_state.c.status_ns,
    device_state.c.changed_ns,
)


def _device_and_state(row: Any) -> tuple[Device, DeviceState | None]:
    """A live row as a device (id, tenant, kinds, name, place, interval and personal-data flag
    only: no address, firmware or dates) and its state (None: never seen)."""
    extra = row[7]
    device = Device(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        interval_s=row[6],
        extra_kinds=tuple(json.loads(extra)) if extra != "[]" else (),
        personal_data=bool(row[8]),
    )
    if row[13] is None:
        return device, None
    return device, DeviceState(row[9], orjson.loads(row[10]), row[11], row[12], row[13])


def _by_device(update: ReadingUpdate) -> str:
    return update.device_id


def _json(metrics: Mapping[str, float]) -> str:
    """A reading's values as a JSON object (orjson takes a dict only)."""
    return orjson.dumps(metrics if type(metrics) is dict else dict(metrics)).decode()


def _upsert(session: Session, table: Table, rows: list[dict[str, Any]], **conflict: Any) -> None:
    """INSERT ... ON CONFLICT DO UPDATE of many rows, in the dialect of the session's database.

    One statement executed for many parameter sets: SQLAlchemy compiles it once (and caches
    it), rather than once per batch as a multi-row VALUES would be.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    set_ = {
        name: value(statement.excluded) if callable(value) else value
        for name, value in conflict["set_"].items()
    }
    where = conflict.get("where")
    upsert = statement.on_conflict_do_update(
        index_elements=conflict["index_elements"],
        set_=set_,
        where=where(statement.excluded) if where is not None else None,
    )
    for start in range(0, len(rows), _CHUNK):
        session.execute(upsert, rows[start : start + _CHUNK])


# A transaction's change stamp: later than the last one given, and the writer's clock unless
# that is behind it. Its row stays locked until the transaction ends.
_TAKE_STAMP: Final = text(
    "UPDATE device_state_clock SET stamp_ns = CASE WHEN stamp_ns < :now_ns THEN :now_ns "
    "ELSE stamp_ns + 1 END WHERE id = 1"
)
_STAMP: Final = text("SELECT stamp_ns FROM device_state_clock WHERE id = 1")

# Keep the newer reading: a worker that is behind never moves a device back. Written in the
# driver's own parameter style (`{p}`) and executed with a tuple per row: SQLAlchemy's
# per-row parameter processing cost more than SQLite's own work on the row (bench.state_flush).
_NEWER_READING: Final = (
    "INSERT INTO device_state (device_id, tenant, last_ns, metrics, changed_ns) "
    "VALUES ({p}, {p}, {p}, {p}, {p}) "
    "ON CONFLICT (device_id) DO UPDATE SET last_ns = excluded.last_ns, "
    "metrics = excluded.metrics, changed_ns = excluded.changed_ns "
    "WHERE device_state.last_ns IS NULL OR excluded.last_ns > device_state.last_ns"
)
# The placeholder of each positional DB-API parameter style (sqlite3: qmark; psycopg2: pyformat).
_PLACEHOLDERS: Final = {"qmark": "?", "format": "%s", "pyformat": "%s"}
# The columns of a StateChange (all in the change indexes) and of a StateRecord, in order.
_CHANGE_COLUMNS: Final = "device_id, last_ns, status, status_ns, changed_ns"
_RECORD_COLUMNS: Final = "device_id, last_ns, metrics, status, status_ns, changed_ns"


def _changes_sql(
    columns: str,
    tenants: Sequence[str] | None,
    after: Position,
    until: Position | None,
    limit: int,
) -> tuple[str, list[object]]:
    """The query of the state rows changed after `after` (and not after `until`) in change
    order, with placeholders written `{p}`, and its parameters."""
    where = ["(changed_ns, device_id) > ({p}, {p})"]
    params: list[object] = [*after]
    if until is not None:
        where.append("(changed_ns, device_id) <= ({p}, {p})")
        params.extend(until)
    if tenants is not None:
        where.append(f"tenant IN ({', '.join(['{p}'] * len(tenants))})")
        params.extend(tenants)
    params.append(limit)
    # Fixed text (the columns are the callers' constants) and placeholders only: every value is
    # a parameter.
    sql = " ".join(
        [
            "SELECT",
            columns,
            "FROM device_state WHERE",
            " AND ".join(where),
            "ORDER BY changed_ns, device_id LIMIT {p}",
        ]
    )
    return sql, params


def _newer_readings(session: Session, rows: list[tuple[str, str, int, str, int]]) -> None:
    """Upsert (device_id, tenant, last_ns, metrics JSON, changed_ns) rows, keeping newer times."""
    connection = session.connection()
    mark = _PLACEHOLDERS.get(connection.dialect.paramstyle)
    if mark is None:  # a driver of a named style: SQLAlchemy translates
        names = ("device_id", "tenant", "last_ns", "metrics", "changed_ns")
        statement = text(_NEWER_READING.format(p="{}").format(*(f":{n}" for n in names)))
        for start in range(0, len(rows), _CHUNK):
            chunk = [dict(zip(names, row, strict=True)) for row in rows[start : start + _CHUNK]]
            session.execute(statement, chunk)
        return
    sql = _NEWER_READING.format(p=mark)
    for start in range(0, len(rows), _CHUNK):
        connection.exec_driver_sql(sql, rows[start : start + _CHUNK])


class DeviceStates(Store):
    """The device-state part of the registry. Writing it does not move the registry revision:
    it is telemetry, not configuration."""

    def record_states(
        self,
        readings: Sequence[ReadingUpdate],
        statuses: Sequence[StatusUpdate] = (),
        minutes: Mapping[tuple[str, int], tuple[int, int]] | None = None,
        *,
        now_ns: int,
    ) -> None:
        """Keep each device's newer reading and status; add `minutes` ((tenant, minute start
        ns) -> (readings, rejections)) to the per-minute counts. One transaction; the rows it
        changes get its stamp (from `now_ns`, see the module's doc)."""
        s = device_state.c
        with self._session() as session:
            if readings or statuses:
                session.execute(_TAKE_STAMP, {"now_ns": now_ns})
                now_ns = int(session.execute(_STAMP).scalar_one())
            if readings:
                # The hot one (a row per reporting device per flush): plain SQL, the same on
                # SQLite and PostgreSQL, costs a third less than the dialects' insert() here.
                _newer_readings(
                    session,
                    [
                        (r.device_id, r.tenant, r.ts_ns, _json(r.metrics), now_ns)
                        for r in sorted(readings, key=_by_device)  # one lock order
                    ],
                )
            if statuses:
                rows = [
                    {
                        "device_id": u.device_id,
                        "tenant": u.tenant,
                        "metrics": "{}",
                        "status": u.state,
                        "status_ns": u.at_ns,
                        "changed_ns": now_ns,
                    }
                    for u in sorted(statuses, key=lambda u: u.device_id)
                ]
                _upsert(
                    session,
                    device_state,
                    rows,
                    index_elements=[s.device_id],
                    set_={
                        "status": lambda new: new.status,
                        "status_ns": lambda new: new.status_ns,
                        "changed_ns": lambda new: new.changed_ns,
                    },
                    where=lambda new: or_(s.status_ns.is_(None), new.status_ns > s.status_ns),
                )
            if minutes:
                m = tenant_minutes.c
                _upsert(
                    session,
                    tenant_minutes,
                    [
                        {"tenant": t, "minute_ns": at, "readings": n, "rejections": r}
                        for (t, at), (n, r) in sorted(minutes.items())
                    ],
                    index_elements=[m.tenant, m.minute_ns],
                    set_={
                        "readings": lambda new: m.readings + new.readings,
                        "rejections": lambda new: m.rejections + new.rejections,
                    },
                )

    def forget_minutes(self, before_ns: int) -> None:
        """Drop the per-minute counts of minutes before `before_ns`."""
        with self._session() as session:
            session.execute(tenant_minutes.delete().where(tenant_minutes.c.minute_ns < before_ns))

    def device_states(self, device_ids: Iterable[str]) -> dict[str, DeviceState]:
        """The state of these devices, by id (devices without one are absent)."""
        ids = list(device_ids)
        s = device_state.c
        out: dict[str, DeviceState] = {}
        with self._session() as session:
            for start in range(0, len(ids), _CHUNK):
                query = select(device_state).where(s.device_id.in_(ids[start : start + _CHUNK]))
                for row in session.execute(query):
                    state = _state_of(row)
                    if state is not None:
                        out[row.device_id] = state
        return out

    def latest_page(
        self,
        *,
        tenants: Sequence[str] | None,
        kind: str | None = None,
        after: str | None = None,
        bbox: BoundingBox | None = None,
        limit: int,
    ) -> list[tuple[Device, DeviceState | None]]:
        """Active devices in id order after id `after` (inside `bbox`, edges included), each
        with its state (None: never seen).

        One index range (devices by tenant and id) joined by key: the cost of a page does not
        depend on the size of the fleet (with a box, on the share of devices inside it).
        """
        s = device_state.c
        query = (
            select(*_LIVE_COLUMNS)
            .outerjoin(device_state, s.device_id == DeviceRow.device_id)
            .where(DeviceRow.retired_at.is_(None))
            .order_by(DeviceRow.device_id)
            .limit(limit)
        )
        if tenants is not None:
            query = query.where(DeviceRow.tenant.in_(list(tenants)))
        if kind is not None:
            query = query.where(DeviceRow.kind == kind)
        if after is not None:
            query = query.where(DeviceRow.device_id > after)
        if bbox is not None:
            query = query.where(in_box(bbox))
        with self._session() as session:
            return [_device_and_state(row) for row in session.execute(query)]

    def state_mark(self, tenants: Sequence[str] | None) -> tuple[int, int]:
        """(newest change in ns, rows) of the tenants' device states: moves with every write."""
        s = device_state.c
        query = select(func.max(s.changed_ns), func.count())
        if tenants is not None:
            query = query.where(s.tenant.in_(list(tenants)))
        with self._session() as session:
            newest, count = session.execute(query).one()
        return int(newest or 0), int(count)

    def status_counts(self, tenants: Sequence[str] | None, now_ns: int) -> list[StatusCount]:
        """Active devices per tenant and kind, by status: one aggregate query."""
        offline = _offline()
        silent = and_(~offline, _silent(now_ns))
        query = (
            select(
                DeviceRow.tenant,
                DeviceRow.kind,
                func.count(),
                func.sum(case((offline, 1), else_=0)),
                func.sum(case((silent, 1), else_=0)),
            )
            .select_from(DeviceRow)
            .outerjoin(device_state, device_state.c.device_id == DeviceRow.device_id)
            .where(DeviceRow.retired_at.is_(None))
            .group_by(DeviceRow.tenant, DeviceRow.kind)
            .order_by(DeviceRow.tenant, DeviceRow.kind)
        )
        if tenants is not None:
            query = query.where(DeviceRow.tenant.in_(list(tenants)))
        with self._session() as session:
            out = []
            for tenant, kind, total, offline_sum, silent_sum in session.execute(query):
                off, quiet = int(offline_sum or 0), int(silent_sum or 0)
                out.append(StatusCount(tenant, kind, total, total - off - quiet, off, quiet))
            return out

    def most_silent(
        self, tenants: Sequence[str] | None, now_ns: int, limit: int = 10
    ) -> list[tuple[Device, int | None]]:
        """The silent active devices longest without a reading (never seen first), each with
        the time of its last reading (ns; None when never seen)."""
        s = device_state.c
        query = (
            select(DeviceRow, s.last_ns)
            .outerjoin(device_state, s.device_id == DeviceRow.device_id)
            .where(DeviceRow.retired_at.is_(None), ~_offline(), _silent(now_ns))
            .order_by(func.coalesce(s.last_ns, -1), DeviceRow.device_id)
            .limit(limit)
        )
        if tenants is not None:
            query = query.where(DeviceRow.tenant.in_(list(tenants)))
        with self._session() as session:
            return [(device_of(row), last) for row, last in session.execute(query)]

    def positions(self, tenants: Sequence[str] | None, now_ns: int) -> DevicePositions:
        """Every active device of the tenants (None: all) with its place and its status at
        `now_ns` (the rule of `live_status`, decided in SQL): one query."""
        offline = _offline()
        status = case((offline, "offline"), (_silent(now_ns), "silent"), else_="online")
        query = (
            select(
                DeviceRow.device_id,
                DeviceRow.name,
                DeviceRow.tenant,
                DeviceRow.kind,
                DeviceRow.longitude,
                DeviceRow.latitude,
                status,
            )
            .outerjoin(device_state, device_state.c.device_id == DeviceRow.device_id)
            .where(DeviceRow.retired_at.is_(None))
            .order_by(DeviceRow.device_id)
        )
        if tenants is not None:
            query = query.where(DeviceRow.tenant.in_(list(tenants)))
        out = DevicePositions([], [], [], [], [], [], [])
        with self._session() as session:
            for device_id, name, tenant, kind, x, y, code in session.execute(query):
                out.device_ids.append(device_id)
                out.names.append(name)
                out.tenants.append(tenant)
                out.kinds.append(kind)
                out.longitudes.append(x)
                out.latitudes.append(y)
                out.statuses.append(code)
        return out

    def change_position(self) -> Position:
        """Where a reader of changes starts to read only what is committed from now on."""
        with self._begin() as conn:
            stamp = conn.execute(_STAMP).scalar_one_or_none()
        return int(stamp or 0) + 1, ""

    def state_changes(
        self,
        tenants: Sequence[str] | None,
        after: Position,
        until: Position | None,
        limit: int,
    ) -> list[StateChange]:
        """The states (without their values) of the tenants' devices changed after `after` (and
        not after `until`), in (stamp, device id) order: a reader continues from the last one
        it got.

        The rows as stored, from one change index alone (it holds every column read: a batch
        is a few neighbouring index pages, where reading the rows cost a table page per device
        changed, each one just rewritten: bench/results/latest_scale.md), joined to nothing:
        retired devices are among them, and a row's status is for the reader to decide
        (api/status_board.py holds what that takes). Their values, for the few a reader shows:
        `state_records`. Plain SQL in the driver's parameter style (`_driver_rows`).
        """
        return self._driver_rows(*_changes_sql(_CHANGE_COLUMNS, tenants, after, until, limit))

    def changed_records(
        self,
        tenants: Sequence[str] | None,
        after: Position,
        until: Position | None,
        limit: int,
    ) -> list[StateRecord]:
        """As `state_changes`, with the values: the state rows as stored, for a reader that
        shows every change (one read of the table's rows rather than the index's and then the
        rows by id)."""
        return self._driver_rows(*_changes_sql(_RECORD_COLUMNS, tenants, after, until, limit))

    def state_records(self, device_ids: Sequence[str]) -> list[StateRecord]:
        """The state rows of these devices as stored (values included), in (stamp, device id)
        order; devices without one are absent. Each is as new as when read: it may be newer
        than a change read before."""
        out: list[StateRecord] = []
        for start in range(0, len(device_ids), _CHUNK):
            chunk = list(device_ids[start : start + _CHUNK])
            # Fixed text and placeholders only: every id is a parameter.
            marks = ", ".join(["{p}"] * len(chunk))
            sql = " ".join(
                [
                    "SELECT",
                    _RECORD_COLUMNS,
                    "FROM device_state WHERE device_id IN (",
                    marks,
                    ")",
                ]
            )
            out.extend(self._driver_rows(sql, chunk))
        out.sort(key=lambda r: (r[5], r[0]))
        return out

    def _driver_rows(self, sql: str, params: Sequence[object]) -> list[Any]:
        """The rows of `sql` (placeholders written `{p}`) as the driver's own plain tuples:
        SQLAlchemy's rows cost as much again per row (bench.latest_scale)."""
        with self._begin() as conn:
            mark = _PLACEHOLDERS.get(conn.dialect.paramstyle)
            if mark is None:  # a driver of a named style: SQLAlchemy translates
                names = [f"p{n}" for n in range(len(params))]
                statement = text(sql.replace("{p}", "{}").format(*(f":{n}" for n in names)))
                rows = conn.execute(statement, dict(zip(names, params, strict=True)))
                return [tuple(row) for row in rows]
            cursor = conn.connection.cursor()  # the driver's own: its rows are plain tuples
            try:
                cursor.execute(sql.replace("{p}", mark), tuple(params))
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def status_rows(self, tenants: Sequence[str] | None) -> tuple[int, list[StatusRow]]:
        """Every device of the tenants (retired too) with its state, and the registry revision
        they are at least as new as (read first: a reader that then follows the devices changed
        after it misses none). One query, plain rows, for a status board to start from."""
        s = device_state.c
        query = select(
            DeviceRow.device_id,
            DeviceRow.tenant,
            DeviceRow.kind,
            DeviceRow.interval_s,
            case((DeviceRow.retired_at.is_(None), 0), else_=1),
            s.last_ns,
            s.status,
            s.status_ns,
            s.changed_ns,
        ).outerjoin(device_state, s.device_id == DeviceRow.device_id)
        if tenants is not None:
            query = query.where(DeviceRow.tenant.in_(list(tenants)))
        with self._begin() as conn:
            revision = conn.execute(select(StateRow.revision).where(StateRow.id == 1))
            at = int(revision.scalar_one_or_none() or 0)
            return at, [tuple(row) for row in conn.execute(query)]

    def minute_counts(
        self, tenants: Sequence[str] | None, since_ns: int
    ) -> dict[int, tuple[int, int]]:
        """Readings and rejections per minute (start in ns) since `since_ns`, over the tenants."""
        m = tenant_minutes.c
        query = (
            select(m.minute_ns, func.sum(m.readings), func.sum(m.rejections))
            .where(m.minute_ns >= since_ns)
            .group_by(m.minute_ns)
        )
        if tenants is not None:
            query = query.where(m.tenant.in_(list(tenants)))
        with self._session() as session:
            return {int(at): (int(n or 0), int(r or 0)) for at, n, r in session.execute(query)}

    def alert_counts(self, tenants: Sequence[str] | None) -> dict[str, int]:
        """Open alerts of the tenants by state (pending, firing)."""
        a = alert_table.c
        query = (
            select(a.state, func.count())
            .where(a.state.in_(["pending", "firing"]))
            .group_by(a.state)
        )
        if tenants is not None:
            query = query.where(a.tenant.in_(list(tenants)))
        with self._session() as session:
            return {str(state): int(n) for state, n in session.execute(query)}
