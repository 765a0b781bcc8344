"""InfluxDB: line protocol, the batched writer, InfluxQL queries and the storage schema."""

from timeseries.client import InfluxClient, InfluxConfig, Series
from timeseries.errors import (
    InfluxAuthFailed,
    InfluxBadAnswer,
    InfluxError,
    InfluxRejected,
    InfluxTooLarge,
    InfluxUnavailable,
)
from timeseries.schema import Retention, ensure_schema
from timeseries.writer import Backoff, BatchWriter, WriteOutcome

__all__ = [
    "Backoff",
    "BatchWriter",
    "InfluxAuthFailed",
    "InfluxBadAnswer",
    "InfluxClient",
    "InfluxConfig",
    "InfluxError",
    "InfluxRejected",
    "InfluxTooLarge",
    "InfluxUnavailable",
    "Retention",
    "Series",
    "WriteOutcome",
    "ensure_schema",
]
