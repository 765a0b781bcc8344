"""Mosquitto's password file and ACL, written from the registry's logins."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from broker.acl import ServiceLogin, acl_text
from broker.secrets import write_secret
from devices.errors import InvalidDevice
from devices.model import BrokerLogin
from devices.registry import Registry

log = logging.getLogger(__name__)


def password_file_text(
    devices: Iterable[BrokerLogin], services: Sequence[ServiceLogin] = ()
) -> str:
    """Mosquitto's password file: one `username:$7$...` line per login."""
    lines = [f"{s.username}:{s.password_hash}" for s in services]
    lines += [f"{d.username}:{d.password_hash}" for d in devices]
    return "\n".join(lines) + "\n" if lines else ""


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """What `write_broker_files` wrote."""

    password_file: Path
    acl_file: Path
    devices: int
    services: int


def write_broker_files(
    logins: Sequence[BrokerLogin],
    password_file: Path,
    acl_file: Path,
    services: Sequence[ServiceLogin] = (),
) -> BrokerFiles:
    """Write the password file and ACL for these device and service logins."""
    names = [s.username for s in services]
    if len(set(names)) != len(names):
        raise InvalidDevice("two service logins share a username", field="username")
    # The broker may re-read either file at any moment (SIGHUP, or the plugin seeing a new file).
    write_secret(acl_file, acl_text(services), broker_reads=True)
    write_secret(password_file, password_file_text(logins, services), broker_reads=True)
    log.info(
        "broker files: %d device and %d service logins in %s",
        len(logins),
        len(services),
        password_file,
    )
    return BrokerFiles(password_file, acl_file, len(logins), len(services))


def write_broker_config(
    registry: Registry,
    password_file: Path,
    acl_file: Path,
    services: Sequence[ServiceLogin] = (),
) -> BrokerFiles:
    """Write the broker's password file and ACL from the registry; retired devices are left out."""
    return write_broker_files(registry.broker_logins(), password_file, acl_file, services)
