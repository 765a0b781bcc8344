"""Device credentials: broker logins and their Mosquitto password hashes, kept by the registry.

Each device logs in as `{tenant}/{deviceId}` with a password generated for it. The registry keeps
only the hash, in the exact form Mosquitto 2.0 reads from its password file
(`$7$iterations$salt$hash`, PBKDF2-HMAC-SHA512, base64), so `lantaarn broker-config` can write
the file without knowing any password. The password file, the ACL and the broker configuration
are the `broker` package's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

from devices.model import Device
from devices.registry import Registry

log = logging.getLogger(__name__)

# Mosquitto 2.0.11's mosquitto_passwd uses 101 iterations. A device password is 192 random bits,
# which no stretching makes harder to guess, but a service password chosen by an operator is not,
# and a leaked password file should cost an attacker real work per guess. The broker pays the
# iterations on every CONNECT, on one thread, and after an outage a whole city reconnects at
# once: 5,000 iterations cost ~3 ms per login here (10,000 devices: ~30 s of broker CPU), 50 times
# the work per offline guess of 101. Measured: bench/results/broker-login.md.
ITERATIONS: Final = 5_000
_SALT_BYTES: Final = 12
_HASH_RE: Final = re.compile(
    r"\$7\$(?P<iterations>[1-9][0-9]{0,8})\$(?P<salt>[A-Za-z0-9+/=]+)\$(?P<digest>[A-Za-z0-9+/=]+)"
)


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


def provision(registry: Registry, device_id: str) -> Credentials:
    """Give an active device a new broker password; the old one stops working at the next reload."""
    device = registry.device(device_id)
    credentials = issue_credentials(device)
    registry.set_password_hash(device_id, credentials.password_hash)
    return credentials
