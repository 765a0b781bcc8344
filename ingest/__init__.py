"""The ingest pipeline: MQTT source -> decode/validate -> sink, with the dead-letter."""

from ingest.decode import Decoded, Decoder, Rejection, TimeRules, prepare
from ingest.errors import BrokerRefused, IngestError, LeaveInterrupted, SourceClosed
from ingest.feed import Session, Source
from ingest.reasons import Reason
from ingest.source import BrokerConfig, Delivery, MqttSource
from ingest.worker import Worker, WorkerConfig, WorkerStats, run_leaver, run_worker

__all__ = [
    "BrokerConfig",
    "BrokerRefused",
    "Decoded",
    "Decoder",
    "Delivery",
    "IngestError",
    "LeaveInterrupted",
    "MqttSource",
    "Reason",
    "Rejection",
    "Session",
    "Source",
    "SourceClosed",
    "TimeRules",
    "Worker",
    "WorkerConfig",
    "WorkerStats",
    "prepare",
    "run_leaver",
    "run_worker",
]
