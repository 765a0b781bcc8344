"""Mosquitto's ACL: what each service login and every device may publish and read.

Devices log in as `{tenant}/{deviceId}`, so the ACL needs no line per device: `pattern` lines on
`%u` are exactly each device's own place in the topic tree. What Mosquitto's ACL cannot say (which
subscriptions a device may make at all, which client id a login may use) the lantaarn plugin
enforces (broker/plugin/lantaarn_auth.c).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from devices.errors import InvalidDevice
from devices.provisioning import hash_password, is_password_hash
from devices.topics import PREFIX

# Service usernames must not contain "/": then `%u` patterns can never reach a device topic, and
# the plugin tells devices (with "/") from services (without).
SERVICE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class Role(enum.StrEnum):
    """What a service login may do on the broker."""

    INGEST = "ingest"  # read every device's telemetry and status (also through $share/...)
    FLEET = "fleet"  # publish for the devices of one tenant at once: a simulation tenant
    OPERATOR = "operator"  # send commands to devices, read their status and answers


@dataclass(frozen=True, slots=True)
class ServiceLogin:
    """A login of one of our own services; `tenant` limits it to one tenant.

    A fleet login publishes device data, which in a deployment only a device's own login may do:
    it must be confined to one (simulation) tenant.
    """

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
        if self.role is Role.FLEET and self.tenant is None:
            raise InvalidDevice(
                f"the fleet login {self.username!r} must be limited to one (simulation) tenant: "
                "only a device's own login may publish for any device",
                field="tenant",
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
            # Mosquitto 2.0 checks `read` per delivered message against its real topic, so these
            # lines also cover $share/{group}/lantaarn/v1/...
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
