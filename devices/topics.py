"""The MQTT topic scheme: `lantaarn/v1/{tenant}/{deviceId}/{channel}`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "lantaarn/v1"
CHANNELS: Final = frozenset({"telemetry", "status", "cmd", "cmd/ack"})
TENANT_PATTERN: Final = r"[A-Za-z0-9_-]{1,32}"
DEVICE_ID_PATTERN: Final = r"[a-z0-9][a-z0-9-]{0,62}"

_TOPIC = re.compile(
    rf"lantaarn/v1/(?P<tenant>{TENANT_PATTERN})/(?P<device>{DEVICE_ID_PATTERN})"
    r"/(?P<channel>telemetry|status|cmd|cmd/ack)"
)
TENANT_RE: Final = re.compile(TENANT_PATTERN)
DEVICE_ID_RE: Final = re.compile(DEVICE_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed device topic."""

    tenant: str
    device_id: str
    channel: str

    def __str__(self) -> str:
        return f"{PREFIX}/{self.tenant}/{self.device_id}/{self.channel}"


def parse_topic(topic: str) -> Topic | None:
    """The parts of a device topic, or None when it does not follow the scheme."""
    match = _TOPIC.fullmatch(topic)
    if match is None:
        return None
    return Topic(match["tenant"], match["device"], match["channel"])


def topic(tenant: str, device_id: str, channel: str = "telemetry") -> str:
    """The topic of one device's channel."""
    return f"{PREFIX}/{tenant}/{device_id}/{channel}"


def shared_subscription(group: str, channel: str) -> str:
    """The shared subscription through which ingest workers split a channel of every device."""
    return f"$share/{group}/{PREFIX}/+/+/{channel}"
