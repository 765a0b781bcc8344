"""Broker logins of the registry's devices: the Mosquitto password hash of each active device."""

from __future__ import annotations

from sqlalchemy import select

from devices.errors import InvalidDevice, NotFound
from devices.model import BrokerLogin
from devices.registry.rows import DeviceRow
from devices.registry.store import Store


class BrokerLogins(Store):
    """The broker logins part of the registry."""

    def set_password_hash(self, device_id: str, password_hash: str) -> BrokerLogin:
        """Give an active device a new broker password (as its Mosquitto hash)."""
        with self._session() as session:
            revision = self._bump(session)
            row = session.get(DeviceRow, device_id)
            if row is None:
                raise NotFound("device", device_id)
            if row.retired_at is not None:
                raise InvalidDevice(
                    f"device {device_id!r} is retired; it gets no broker login", field="device_id"
                )
            row.broker_password_hash = password_hash
            row.revision = revision
            return BrokerLogin(row.tenant, row.device_id, password_hash)

    def broker_logins(self) -> list[BrokerLogin]:
        """The broker logins of every active device that has one, by device id."""
        query = (
            select(DeviceRow.tenant, DeviceRow.device_id, DeviceRow.broker_password_hash)
            .where(DeviceRow.retired_at.is_(None), DeviceRow.broker_password_hash.is_not(None))
            .order_by(DeviceRow.device_id)
        )
        with self._session() as session:
            return [BrokerLogin(t, d, str(h)) for t, d, h in session.execute(query)]
