"""Why a reading (or a whole message) was set aside: the reason codes of the dead-letter."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """A rejection's reason code; stable, used as a tag and a metric label."""

    BAD_JSON = "bad_json"
    SCHEMA = "schema"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_METRIC = "unknown_metric"
    OUT_OF_RANGE = "out_of_range"
    NOT_FINITE = "not_finite"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_INVALID = "timestamp_invalid"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOPIC_INVALID = "topic_invalid"
    TENANT_MISMATCH = "tenant_mismatch"
    DEVICE_RETIRED = "device_retired"
    STORAGE_REFUSED = "storage_refused"
