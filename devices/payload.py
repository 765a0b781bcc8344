"""The telemetry payload a device publishes, as pydantic models (untrusted input)."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_READINGS: Final = 1000

# bool is refused on purpose: JSON true/false is not a measurement (states are 0 or 1).
Value = StrictFloat | StrictInt
Timestamp = Annotated[str, Field(max_length=64)] | StrictFloat | StrictInt


class ReadingIn(BaseModel):
    """One reading: when (RFC 3339 with zone, or epoch seconds), a sequence number, the values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: Timestamp | None = None
    seq: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    metrics: Annotated[dict[Annotated[str, Field(max_length=64)], Value], Field(min_length=1)]


class TelemetryIn(BaseModel):
    """A telemetry message: one reading, or several under `readings`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: Timestamp | None = None
    seq: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    metrics: dict[Annotated[str, Field(max_length=64)], Value] | None = None
    readings: Annotated[list[ReadingIn], Field(min_length=1, max_length=MAX_READINGS)] | None = None

    def all_readings(self) -> list[ReadingIn] | None:
        """The readings this message carries, or None when it is neither form (or both)."""
        if self.readings is not None:
            if self.metrics is not None or self.ts is not None or self.seq is not None:
                return None
            return self.readings
        if self.metrics is None or not self.metrics:
            return None
        return [ReadingIn(ts=self.ts, seq=self.seq, metrics=self.metrics)]
