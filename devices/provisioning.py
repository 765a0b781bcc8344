"""Broker logins: Mosquitto password hashes, device credentials, the password file and the ACL.

Each device logs in as `{tenant}/{deviceId}` with a password generated for it. The registry keeps
only the hash, in the exact form Mosquitto 2.0 reads from its password file
(`$7$iterations$salt$hash`, PBKDF2-HMAC-SHA512, base64), so `lantaarn broker-config` can write
the file without knowing any password. The ACL is a few `pattern` lines built on `%u`: since the
username *is* `{tenant}/{deviceId}`, `lantaarn/v1/%u/telemetry` is exactly the device's own
topic, and the ACL stays the same size however many devices there are.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from devices.errors import InvalidDevice
from devices.model import BrokerLogin, Device
from devices.registry import Registry
from devices.topics import PREFIX

log = logging.getLogger(__name__)

# Mosquitto 2.0.11's mosquitto_passwd uses 101 iterations and a 12-byte salt. Our passwords are
# 192 random bits, so stretching adds no protection against guessing, while the broker pays the
# iterations on every CONNECT: after an outage a whole city reconnects at once.
ITERATIONS: Final = 101
_SALT_BYTES: Final = 12
_HASH_RE: Final = re.compile(
    r"\$7\$(?P<iterations>[1-9][0-9]{0,8})\$(?P<salt>[A-Za-z0-9+/=]+)\$(?P<digest>[A-Za-z0-9+/=]+)"
)
# Service usernames must not contain "/": then `%u` patterns can never reach a device topic.
SERVICE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The Mosquitto 2.0 password-file hash of `password` (`$7$...`)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, password_hash: str) -> bool:
    """Whether `password` matches a Mosquitto `$7$` hash (ours or mosquitto_passwd's)."""
    match = _HASH_RE.fullmatch(password_hash)
    if match is None:
        return False
    salt = base64.b64decode(match["salt"])
    expected = base64.b64decode(match["digest"])
    actual = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(match["iterations"]))
    return hmac.compare_digest(actual, expected)


def is_password_hash(text: str) -> bool:
    """Whether `text` looks like a Mosquitto `$7$` hash."""
    return _HASH_RE.fullmatch(text) is not None


def new_password() -> str:
    """A fresh random broker password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A device's broker login as handed out once: the password is never stored."""

    device_id: str
    username: str
    password: str = field(repr=False)
    password_hash: str = field(repr=False)


def device_username(tenant: str, device_id: str) -> str:
    """The broker username of a device."""
    return f"{tenant}/{device_id}"


def issue_credentials(device: Device) -> Credentials:
    """New credentials for a device (store `password_hash`, show `password` once)."""
    password = new_password()
    return Credentials(
        device.device_id,
        device_username(device.tenant, device.device_id),
        password,
        hash_password(password),
    )


class Role(enum.StrEnum):
    """What a service login may do on the broker."""

    INGEST = "ingest"  # read every device's telemetry and status (also through $share/...)
    FLEET = "fleet"  # publish for many devices at once: simulators and gateways
    OPERATOR = "operator"  # send commands to devices, read their status and answers


@dataclass(frozen=True, slots=True)
class ServiceLogin:
    """A login of one of our own services; `tenant` limits a fleet or operator to one tenant."""

    username: str
    password_hash: str = field(repr=False)
    role: Role
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not SERVICE_NAME_RE.fullmatch(self.username):
            raise InvalidDevice(
                f"service username {self.username!r} must match [A-Za-z0-9_.-]{{1,64}} "
                "(no '/', which would let it reach device topics)",
                field="username",
            )
        if not is_password_hash(self.password_hash):
            raise InvalidDevice(
                f"the password of {self.username!r} is not a Mosquitto $7$ hash",
                field="passwordHash",
            )

    @classmethod
    def with_password(
        cls, username: str, password: str, role: Role, tenant: str | None = None
    ) -> ServiceLogin:
        """A service login, hashing `password` now."""
        return cls(username, hash_password(password), role, tenant)

    def acl_lines(self) -> list[str]:
        """This service's ACL section."""
        scope = f"{PREFIX}/{self.tenant or '+'}/+"
        if self.role is Role.INGEST:
            # Mosquitto 2.0 grants every SUBSCRIBE and checks `read` per delivered message
            # against its real topic, so these lines also cover $share/{group}/lantaarn/v1/...
            rules = [f"topic read {scope}/telemetry", f"topic read {scope}/status"]
        elif self.role is Role.FLEET:
            rules = [
                f"topic write {scope}/telemetry",
                f"topic write {scope}/status",
                f"topic write {scope}/cmd/ack",
                f"topic read {scope}/cmd",
            ]
        else:
            rules = [
                f"topic write {scope}/cmd",
                f"topic read {scope}/cmd/ack",
                f"topic read {scope}/status",
            ]
        return [f"user {self.username}", *rules]


def password_file_text(
    devices: Iterable[BrokerLogin], services: Sequence[ServiceLogin] = ()
) -> str:
    """Mosquitto's password file: one `username:$7$...` line per login."""
    lines = [f"{s.username}:{s.password_hash}" for s in services]
    lines += [f"{d.username}:{d.password_hash}" for d in devices]
    return "\n".join(lines) + "\n" if lines else ""


def acl_text(services: Sequence[ServiceLogin] = ()) -> str:
    """Mosquitto's ACL file: the services' sections and the patterns every device falls under."""
    lines = ["# written by `lantaarn broker-config`; changes here are overwritten", ""]
    for service in services:
        lines += [*service.acl_lines(), ""]
    lines += [
        "# Devices log in as {tenant}/{deviceId}: %u is the device's own place in the topic tree.",
        f"pattern write {PREFIX}/%u/telemetry",
        f"pattern write {PREFIX}/%u/status",
        f"pattern write {PREFIX}/%u/cmd/ack",
        f"pattern read {PREFIX}/%u/cmd",
    ]
    return "\n".join(lines) + "\n"


def _write_atomically(path: Path, text: str) -> None:
    # The broker may re-read the file at any moment (SIGHUP): it must never see half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        Path(temporary).chmod(0o600)  # password hashes: the broker runs as us (or root)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
    _write_atomically(acl_file, acl_text(services))
    _write_atomically(password_file, password_file_text(logins, services))
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


def provision(registry: Registry, device_id: str) -> Credentials:
    """Give an active device a new broker password; the old one stops working at the next reload."""
    device = registry.device(device_id)
    credentials = issue_credentials(device)
    registry.set_password_hash(device_id, credentials.password_hash)
    return credentials
