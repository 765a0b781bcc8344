"""Errors talking to InfluxDB, each saying whether a retry can help."""

from __future__ import annotations


class InfluxError(Exception):
    """Base of the time-series errors."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InfluxUnavailable(InfluxError):
    """The database did not answer or answered 5xx/429; worth retrying, after `retry_after` s."""

    retryable = True

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class InfluxAuthFailed(InfluxError):
    """401/403: our credentials are wrong or lack rights. Retrying will not help."""


class InfluxRejected(InfluxError):
    """400: the database refused (some of) the data or the query as written."""


class InfluxBadAnswer(InfluxError):
    """A 2xx answer that is not an InfluxDB result (not JSON, or not shaped like one): something
    other than InfluxDB answered, such as a proxy's page, or the body was cut off."""


class InfluxTooLarge(InfluxError):
    """413: the request body was too large; send less at once."""
