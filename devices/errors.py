"""Errors of the device domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class DeviceError(Exception):
    """Base of the device domain's errors."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a description: the property, why, and where in a file (if any)."""

    field: str | None
    reason: str
    where: str | None = None  # e.g. "line 4" of a CSV file or "feature 2" of a GeoJSON file

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}{self.reason}"


class InvalidDevice(DeviceError):
    """A device or tenant description breaks a rule; `field` names the (first) offending property.

    `problems` lists every rule broken, so that a caller can show them all at once.
    """

    def __init__(
        self, message: str, *, field: str | None = None, problems: Sequence[Problem] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.problems: tuple[Problem, ...] = tuple(problems) or (Problem(field, message),)

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> InvalidDevice:
        """One error that lists several problems (at least one)."""
        if not problems:
            raise ValueError("InvalidDevice.of needs at least one problem")
        message = "; ".join(str(p) for p in problems)
        return cls(message, field=problems[0].field, problems=problems)


class ImportRejected(InvalidDevice):
    """A bulk import with bad rows: nothing was imported; `problems` names each row and reason."""

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> ImportRejected:
        """The rejection of a file, listing every bad row."""
        if not problems:
            raise ValueError("ImportRejected.of needs at least one problem")
        count = len(problems)
        message = f"{count} problem(s), nothing imported: " + "; ".join(str(p) for p in problems)
        return cls(message, field=problems[0].field, problems=problems)


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
