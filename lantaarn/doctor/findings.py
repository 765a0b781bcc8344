"""What the doctor found: one finding per check, with what to do about it."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Status(enum.Enum):
    """How bad a finding is. Only FAIL (data at risk, or a part down) makes the exit non-zero."""

    OK = "ok"
    INFO = "info"  # what could not be told from outside, or is worth knowing
    WARN = "warn"  # not right, but no reading is at risk because of it
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: which part, what was seen, and the fix when it is not OK."""

    check: str
    status: Status
    message: str
    fix: str = ""


def render(findings: Iterable[Finding]) -> str:
    """The findings as text for a terminal, one block per finding."""
    lines = []
    for finding in findings:
        lines.append(f"[{finding.status.value.upper():>4}] {finding.check}: {finding.message}")
        if finding.fix:
            lines.append(f"       fix: {finding.fix}")
    return "\n".join(lines)


def at_risk(findings: Iterable[Finding]) -> bool:
    """Whether any finding puts data at risk (the command then exits non-zero)."""
    return any(f.status is Status.FAIL for f in findings)
