"""Devices of the registry: adding (one, or a file's worth at once), reading, changing, retiring.

A device is never deleted: retiring keeps its history readable and drops its broker login.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from devices.errors import Conflict, ImportRejected, InvalidDevice, NotFound, Problem
from devices.model import BoundingBox, Device
from devices.registry.rows import (
    DeviceRow,
    StateRow,
    TenantRow,
    canonical_address,
    device_of,
    device_values,
    tenant_of,
)
from devices.registry.rules import UPDATABLE, device_problems, unchangeable
from devices.registry.store import Store

Status = Literal["active", "retired"]


@dataclass(frozen=True, slots=True)
class DeviceChanges:
    """The devices that changed between two registry revisions (see Devices.device_changes).

    `complete`: `devices` is every device of the registry, not only the changed ones (a first
    read, or a reader that cannot follow: the registry's revision went backwards, as after a
    database restore). `device_count`: how many devices the registry held at `revision`.
    """

    revision: int
    device_count: int
    devices: list[Device]
    complete: bool


_CHUNK: Final = 500  # ids per IN (...) query; far below every driver's parameter limit


def in_box(box: BoundingBox) -> ColumnElement[bool]:
    """A device inside the box, edges included (across the antimeridian when min_lon >
    max_lon)."""
    lon: ColumnElement[bool]
    if box.min_lon <= box.max_lon:
        lon = DeviceRow.longitude.between(box.min_lon, box.max_lon)
    else:
        lon = or_(DeviceRow.longitude >= box.min_lon, DeviceRow.longitude <= box.max_lon)
    return and_(DeviceRow.latitude.between(box.min_lat, box.max_lat), lon)


class Devices(Store):
    """The devices part of the registry."""

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
            found = _problems_of_new(session, devices, labels)
            if found:
                if labels is not None:
                    raise ImportRejected.of(found)
                if len(devices) == 1 and any(p.reason.endswith("already exists") for p in found):
                    # Sending the same device twice is the usual way to get here: say so first.
                    raise Conflict("device", devices[0].device_id)
                raise InvalidDevice.of(found)
            now = datetime.now(UTC)
            for device in devices:
                values = device_values(device)
                values["created_at"] = device.created_at or now
                session.add(
                    DeviceRow(
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

    def check_new(self, devices: Sequence[Device], labels: Sequence[str]) -> list[Problem]:
        """The problems `add_devices` would find with these devices, without storing any."""
        with self._session() as session:
            return _problems_of_new(session, devices, labels)

    def add_device(self, device: Device, *, password_hash: str | None = None) -> Device:
        """Store one new device (with its broker password hash, if given)."""
        hashes = {device.device_id: password_hash} if password_hash is not None else None
        self.add_devices([device], password_hashes=hashes)
        return self.device(device.device_id)

    def device(self, device_id: str) -> Device:
        """The device with id `device_id`."""
        with self._session() as session:
            row = session.get(DeviceRow, device_id)
            if row is None:
                raise NotFound("device", device_id)
            return device_of(row)

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
        query = select(DeviceRow).order_by(DeviceRow.device_id)
        if tenants is not None:
            query = query.where(DeviceRow.tenant.in_(list(tenants)))
        if kind is not None:
            query = query.where(DeviceRow.kind == kind)
        if after is not None:
            query = query.where(DeviceRow.device_id > after)
        if status == "retired":
            query = query.where(DeviceRow.retired_at.is_not(None))
        if status == "active" or not include_retired:
            query = query.where(DeviceRow.retired_at.is_(None))
        if bbox is not None:
            query = query.where(in_box(bbox))
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            return [device_of(r) for r in session.scalars(query)]

    def device_changes(self, since: int | None = None) -> DeviceChanges:
        """The devices added or changed after registry revision `since`, by id.

        Every device when `since` is None or ahead of the registry. A row's `revision` is that
        of its last change (adding, updating, retiring, a new broker password), and writers
        commit in revision order (the state row's lock), so rows of revisions up to the one
        read here are all committed: a reader that applies them and asks again with the
        returned `revision` misses nothing. Rows of later revisions are left to that next call.
        """
        with self._session() as session:
            state = session.execute(
                select(StateRow.revision, StateRow.device_count).where(StateRow.id == 1)
            ).one_or_none()
            revision, count = (0, 0) if state is None else (int(state[0]), int(state[1]))
            if since == revision:
                return DeviceChanges(revision, count, [], complete=False)
            query = select(DeviceRow).order_by(DeviceRow.device_id)
            complete = since is None or since > revision
            if complete:
                rows = [device_of(r) for r in session.scalars(query)]
                return DeviceChanges(revision, len(rows), rows, complete=True)
            query = query.where(DeviceRow.revision > since, DeviceRow.revision <= revision)
            rows = [device_of(r) for r in session.scalars(query)]
            return DeviceChanges(revision, count, rows, complete=False)

    def update(self, device_id: str, changes: Mapping[str, object]) -> Device:
        """Change some properties of a device (snake_case names of `Device`); id and tenant stay."""
        if refused := unchangeable(frozenset(changes)):
            raise InvalidDevice.of(refused)
        with self._session() as session:
            revision = self._bump(session)
            row = session.get(DeviceRow, device_id)
            if row is None:
                raise NotFound("device", device_id)
            tenant_row = session.get(TenantRow, row.tenant)
            device = replace(device_of(row), **changes)  # type: ignore[arg-type]
            found = device_problems(device, tenant_of(tenant_row) if tenant_row else None)
            address = canonical_address(device.ipv6_address)
            if address is not None and address != row.ipv6_address:
                other = session.scalars(
                    select(DeviceRow.device_id).where(
                        and_(DeviceRow.ipv6_address == address, DeviceRow.device_id != device_id)
                    )
                ).first()
                if other is not None:
                    found.append(Problem("ipv6_address", f"{address} is already device {other}'s"))
            if found:
                raise InvalidDevice.of(found)
            values = device_values(device)
            for name in UPDATABLE:
                setattr(row, name, values[name])
            row.revision = revision
            return device_of(row)

    def retire(self, device_id: str, when: datetime | None = None) -> Device:
        """Mark a device retired and drop its broker login; retiring twice changes nothing."""
        with self._session() as session:
            revision = self._bump(session)
            row = session.get(DeviceRow, device_id)
            if row is None:
                raise NotFound("device", device_id)
            if row.retired_at is None:
                row.retired_at = when or datetime.now(UTC)
                row.broker_password_hash = None
                row.revision = revision
            return device_of(row)


def _problems_of_new(
    session: Session, devices: Sequence[Device], labels: Sequence[str] | None
) -> list[Problem]:
    """Every problem of new devices: the rules, and ids or addresses taken or repeated."""
    tenants = {
        row.code: tenant_of(row)
        for row in session.scalars(
            select(TenantRow).where(TenantRow.code.in_({d.tenant for d in devices}))
        )
    }
    ids = [d.device_id for d in devices]
    taken = {value for value, _ in _existing(session, DeviceRow.device_id, ids)}
    addresses = {
        canonical_address(d.ipv6_address): d.device_id
        for d in devices
        if d.ipv6_address is not None
    }
    used = dict(_existing(session, DeviceRow.ipv6_address, [a for a in addresses if a is not None]))
    seen_ids: dict[str, str] = {}
    seen_addresses: dict[str, str] = {}
    found: list[Problem] = []
    for index, device in enumerate(devices):
        where = labels[index] if labels is not None else None
        label = where or device.device_id
        own = device_problems(device, tenants.get(device.tenant))
        if device.device_id in taken:
            own.append(Problem("device_id", f"device {device.device_id!r} already exists"))
        elif device.device_id in seen_ids:
            own.append(
                Problem(
                    "device_id",
                    f"device id {device.device_id!r} repeats {seen_ids[device.device_id]}",
                )
            )
        seen_ids.setdefault(device.device_id, label)
        address = canonical_address(device.ipv6_address)
        if address is not None:
            if address in used:
                own.append(
                    Problem("ipv6_address", f"{address} is already device {used[address]}'s")
                )
            elif address in seen_addresses:
                own.append(Problem("ipv6_address", f"{address} repeats {seen_addresses[address]}"))
            seen_addresses.setdefault(address, label)
        found.extend(replace(p, where=where) for p in own)
    return found


def _existing(session: Session, column: Any, values: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(value, device id) of the devices whose `column` is one of `values`."""
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        query = select(column, DeviceRow.device_id).where(column.in_(chunk))
        for value, device_id in session.execute(query):
            yield str(value), str(device_id)
