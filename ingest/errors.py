"""Errors of the ingest pipeline."""

from __future__ import annotations


class IngestError(Exception):
    """Base of the ingest errors."""


class BrokerRefused(IngestError):
    """The broker did not let us in (wrong credentials, unreachable); not worth retrying blindly."""


class SourceClosed(IngestError):
    """The source was closed and everything it had was handed out."""


class LeaveInterrupted(IngestError):
    """A worker's leave was stopped before its session was drained; the session is kept."""
