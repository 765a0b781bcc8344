"""The command contract on the wire: what the platform sends on `cmd`, what a device answers.

Platform → device, `lantaarn/v1/{tenant}/{deviceId}/cmd`, QoS 1, MQTT 5 with Response Topic
`.../cmd/ack`, Correlation Data = the command id (UTF-8) and Message Expiry Interval = the
seconds left until `expiresAt`:
    {"id": "…", "name": "set_dim_level", "args": {"level": 40},
     "issuedAt": "2026-12-02T01:00:00.000Z", "expiresAt": "2026-12-02T01:05:00.000Z"}
Device → platform, `.../cmd/ack`, QoS 1:
    {"id": "…", "status": "done" | "refused" | "failed", "detail": "…", "ts": "…"}
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from devices.topics import topic

MAX_ACK_BYTES: Final = 4096
AckStatus = Literal["done", "refused", "failed"]
ACK_STATUSES: Final = ("done", "refused", "failed")


def command_topic(tenant: str, device_id: str) -> str:
    """Where a device receives its commands."""
    return topic(tenant, device_id, "cmd")


def ack_topic(tenant: str, device_id: str) -> str:
    """Where a device answers its commands."""
    return topic(tenant, device_id, "cmd/ack")


def utc_text(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class CommandMessage(BaseModel):
    """A command as a device receives it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    args: dict[str, Any] = Field(default_factory=dict)
    issued_at: Annotated[datetime, Field(alias="issuedAt")]
    expires_at: Annotated[datetime, Field(alias="expiresAt")]

    def payload(self) -> bytes:
        """The JSON a device receives."""
        return orjson.dumps(
            {
                "id": self.id,
                "name": self.name,
                "args": self.args,
                "issuedAt": utc_text(self.issued_at),
                "expiresAt": utc_text(self.expires_at),
            }
        )

    def expiry_interval_s(self, now: datetime) -> int:
        """The MQTT Message Expiry Interval: whole seconds left until `expires_at` (at least 1)."""
        return max(1, math.ceil((self.expires_at - now).total_seconds()))


class CommandAck(BaseModel):
    """A device's answer to one of its commands (untrusted input)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=64)]
    status: AckStatus
    detail: Annotated[str, Field(max_length=500)] | None = None
    ts: Annotated[str, Field(max_length=64)] | None = None

    def payload(self) -> bytes:
        """The JSON a device sends."""
        return orjson.dumps(self.model_dump(exclude_none=True))
