"""Errors of the device domain."""

from __future__ import annotations


class DeviceError(Exception):
    """Base of the device domain's errors."""


class InvalidDevice(DeviceError):
    """A device or tenant description breaks a rule; `field` names the offending property."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DeviceError):
    """A tenant or device that does not exist."""

    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"{what} {key!r} does not exist")
        self.what = what
        self.key = key


class Conflict(DeviceError):
    """A tenant or device that already exists."""

    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"{what} {key!r} already exists")
        self.what = what
        self.key = key
