"""The ground truth of a simulation: what was sent, by device, so tests can reconcile it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Sent:
    """One published reading: device, timestamp (ns), sequence number, the values sent."""

    device_id: str
    tenant: str
    ts_ns: int
    seq: int
    metrics: dict[str, float]
    fault: str | None = None  # the fault injected on purpose, if any


@dataclass(slots=True)
class Ledger:
    """Thread-safe record of every reading a simulator published."""

    sent: list[Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, entry: Sent) -> None:
        """Record one published reading."""
        with self._lock:
            self.sent.append(entry)

    def by_device(self) -> dict[str, list[Sent]]:
        """The readings sent, per device, in the order sent."""
        out: dict[str, list[Sent]] = {}
        with self._lock:
            for entry in self.sent:
                out.setdefault(entry.device_id, []).append(entry)
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self.sent)
