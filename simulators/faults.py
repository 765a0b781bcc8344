"""Faults injected on purpose, at configurable rates: how real devices break.

Rates are probabilities per reading (or, for device faults, per device). At most one message
or reading fault hits a reading, so the ledger can say exactly which one did.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace
from typing import Final


class Fault(enum.StrEnum):
    """A fault the simulator injects; the ledger records it with each reading it hit."""

    # whole message
    MALFORMED_JSON = "malformed_json"  # truncated JSON
    OVERSIZE = "oversize"  # a batch beyond 64 KiB
    WRONG_TOPIC = "wrong_topic"  # another tenant's path, a bad device id, or an unknown device
    DUPLICATE = "duplicate"  # the same message twice
    # one reading
    FUTURE_TIMESTAMP = "future_timestamp"  # hours ahead of the receive time
    STALE_TIMESTAMP = "stale_timestamp"  # older than the platform keeps
    # one metric of a reading
    OUT_OF_RANGE = "out_of_range"
    NOT_FINITE = "not_finite"  # NaN, Infinity, -Infinity literals
    UNKNOWN_METRIC = "unknown_metric"  # a metric its kind does not have
    # the device
    CLOCK_SKEW = "clock_skew"  # its clock is off by a fixed amount the platform still accepts
    SILENT = "silent"  # stops reporting for a while
    FLAP = "flap"  # drops its connection, comes back and sends its backlog
    # the lamp's controller, as commands find it
    REFUSES_COMMANDS = "refuses_commands"  # answers every command "refused" (manual override)
    NEVER_ANSWERS = "never_answers"  # hears commands, obeys none and never answers
    OFFLINE_SPELLS = "offline_spells"  # away for spells; its session keeps commands till it is back
    # what the device measures: a street in trouble or a lamp gone wrong (one built-in alert
    # rule each; see EPISODE_KINDS)
    POLLUTION_EPISODE = "pollution_episode"  # fine dust well above the WHO guideline
    LOUD_STREET = "loud_street"  # a loud source close by, day and night
    FLOODED = "flooded"  # water at 2 m NAP or higher: the street is under water
    DAY_BURNER = "day_burner"  # the photocell is stuck: lit day and night
    DARK = "dark"  # the lamp stays dark, as in a district without supply


COMMAND_FAULTS: Final = (Fault.REFUSES_COMMANDS, Fault.NEVER_ANSWERS, Fault.OFFLINE_SPELLS)
# The episode faults and the kind of device each happens to; others ignore it.
EPISODE_KINDS: Final = {
    Fault.POLLUTION_EPISODE: "air_quality",
    Fault.LOUD_STREET: "noise",
    Fault.FLOODED: "water_level",
    Fault.DAY_BURNER: "lamppost",
    Fault.DARK: "lamppost",
}


READING_FAULTS: Final = (
    Fault.MALFORMED_JSON,
    Fault.OVERSIZE,
    Fault.WRONG_TOPIC,
    Fault.DUPLICATE,
    Fault.FUTURE_TIMESTAMP,
    Fault.STALE_TIMESTAMP,
    Fault.OUT_OF_RANGE,
    Fault.NOT_FINITE,
    Fault.UNKNOWN_METRIC,
)


@dataclass(frozen=True, slots=True)
class FaultRates:
    """How often each fault happens.

    Reading faults are chances per reading (0..1, summing to at most 1); `clock_skew` is the
    share of devices whose clock is off; `silent` and `flap` are chances per reading that a
    device starts a spell of silence or of being disconnected. The command faults
    (`refuses_commands`, `never_answers`, `offline_spells`) are shares of devices, summing to
    at most 1: each device has at most one. The episode faults (`pollution_episode`,
    `loud_street`, `flooded`, `day_burner`, `dark`) are shares of the devices of their kind
    (`EPISODE_KINDS`); the two lamp faults sum to at most 1.
    """

    malformed_json: float = 0.0
    oversize: float = 0.0
    wrong_topic: float = 0.0
    duplicate: float = 0.0
    future_timestamp: float = 0.0
    stale_timestamp: float = 0.0
    out_of_range: float = 0.0
    not_finite: float = 0.0
    unknown_metric: float = 0.0
    clock_skew: float = 0.0
    silent: float = 0.0
    flap: float = 0.0
    refuses_commands: float = 0.0
    never_answers: float = 0.0
    offline_spells: float = 0.0
    pollution_episode: float = 0.0
    loud_street: float = 0.0
    flooded: float = 0.0
    day_burner: float = 0.0
    dark: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {f.name}={value} is not within 0..1")
        if self.reading_total > 1.0:
            raise ValueError("the reading fault rates add up to more than 1")
        if sum(getattr(self, f.value) for f in COMMAND_FAULTS) > 1.0:
            raise ValueError("the command fault shares add up to more than 1")
        if self.day_burner + self.dark > 1.0:
            raise ValueError("the lamp fault shares (day_burner, dark) add up to more than 1")

    @property
    def reading_total(self) -> float:
        """The chance that a reading carries some reading or message fault."""
        return float(sum(getattr(self, f.value) for f in READING_FAULTS))

    def table(self) -> tuple[tuple[float, Fault], ...]:
        """Cumulative edges of the reading faults with a rate, for `pick` in the hot path."""
        edges = []
        edge = 0.0
        for fault in READING_FAULTS:
            rate = float(getattr(self, fault.value))
            if rate > 0:
                edge += rate
                edges.append((edge, fault))
        return tuple(edges)

    @property
    def any(self) -> bool:
        """Whether any fault is switched on."""
        return any(getattr(self, f.name) > 0 for f in fields(self))

    @classmethod
    def spread(cls, total: float) -> FaultRates:
        """`total` spread evenly over the reading faults, with a few skewed, silent, flapping."""
        each = total / len(READING_FAULTS)
        rates = cls(**{f.value: each for f in READING_FAULTS})
        share = min(1.0, total) / 3
        return replace(
            rates,
            clock_skew=min(1.0, total),
            silent=total / 50,
            flap=total / 50,
            refuses_commands=share,
            never_answers=share,
            offline_spells=share,
        )

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """`0.05` (spread evenly) or `malformed_json=0.01,flap=0.001` (named rates)."""
        text = text.strip()
        if not text or text == "none":
            return cls()
        if "=" not in text:
            return cls.spread(float(text))
        rates: dict[str, float] = {}
        names = {f.value for f in Fault}
        for part in text.split(","):
            name, _, value = part.partition("=")
            name = name.strip().replace("-", "_")
            if name not in names:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(names))}")
            rates[name] = float(value)
        return cls(**rates)

    def command_fault(self, u: float) -> Fault | None:
        """The command fault a device whose uniform draw is `u` (0..1) has, or None."""
        edge = 0.0
        for fault in COMMAND_FAULTS:
            edge += float(getattr(self, fault.value))
            if u < edge:
                return fault
        return None

    def episode(self, kind: str, u: float) -> Fault | None:
        """The episode fault a device of `kind` whose uniform draw is `u` (0..1) has, or None."""
        edge = 0.0
        for fault, its_kind in EPISODE_KINDS.items():
            if its_kind != kind:
                continue
            edge += float(getattr(self, fault.value))
            if u < edge:
                return fault
        return None

    def pick(self, u: float) -> Fault | None:
        """The reading fault that a uniform draw `u` (0..1) lands on, or None."""
        for edge, fault in self.table():
            if u < edge:
                return fault
        return None
