"""The device domain: kinds and metrics, the payload and topic schemes, IPv6 rules, the registry."""

from devices.catalogue import DEVICE_KINDS, Aggregation, DeviceKind, Metric, device_kind
from devices.errors import Conflict, DeviceError, ImportRejected, InvalidDevice, NotFound, Problem
from devices.ipv6 import DOCUMENTATION_PREFIX, check_device_address
from devices.model import BoundingBox, BrokerLogin, Device, Tenant
from devices.payload import MAX_PAYLOAD_BYTES, MAX_READINGS, ReadingIn, TelemetryIn
from devices.registry import Registry
from devices.topics import Topic, parse_topic, shared_subscription, topic

__all__ = [
    "DEVICE_KINDS",
    "DOCUMENTATION_PREFIX",
    "MAX_PAYLOAD_BYTES",
    "MAX_READINGS",
    "Aggregation",
    "BoundingBox",
    "BrokerLogin",
    "Conflict",
    "Device",
    "DeviceError",
    "DeviceKind",
    "ImportRejected",
    "InvalidDevice",
    "Metric",
    "NotFound",
    "Problem",
    "ReadingIn",
    "Registry",
    "TelemetryIn",
    "Tenant",
    "Topic",
    "check_device_address",
    "device_kind",
    "parse_topic",
    "shared_subscription",
    "topic",
]
