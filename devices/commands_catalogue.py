"""The command catalogue: what each device kind can be told to do, with typed, ranged arguments.

Like the metric catalogue, this is the one source of truth: the API checks a command against
it before anything is stored or sent, `/v1/device-kinds` lists it, and the simulators obey it.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from devices.catalogue import DEVICE_KINDS
from devices.errors import Problem


class ArgumentType(enum.StrEnum):
    """The JSON type an argument takes."""

    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class Argument:
    """One argument of a command: its type and, for numbers, the range (edges included)."""

    name: str
    type: ArgumentType
    description: str
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None  # for strings: the whole value must match
    unit: str | None = None  # UCUM, for numbers

    def problems(self, value: object) -> list[str]:
        """Why `value` does not fit this argument (empty when it does)."""
        kind = self.type
        if kind is ArgumentType.BOOLEAN:
            return [] if isinstance(value, bool) else ["must be true or false"]
        if kind is ArgumentType.STRING:
            if not isinstance(value, str):
                return ["must be a string"]
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                return [f"must match {self.pattern}"]
            return []
        # JSON has one number type; a bool is not a number here even though Python says so.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"must be {'an integer' if kind is ArgumentType.INTEGER else 'a number'}"]
        if not math.isfinite(value):
            return ["must be finite"]
        if kind is ArgumentType.INTEGER and value != int(value):
            return ["must be an integer"]
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            return [f"must be within {_edge(low)}..{_edge(high)}"]
        return []


def _edge(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command a device kind understands; every argument is required."""

    name: str
    description: str
    arguments: tuple[Argument, ...] = ()


_INT = ArgumentType.INTEGER
SCHEDULE_ID_PATTERN: Final = r"[A-Za-z0-9_-]{1,64}"

_EVERY_KIND: Final = (
    CommandSpec(
        "set_interval",
        "Report every `seconds` from now on",
        (Argument("seconds", _INT, "Reporting interval", 10, 86400, unit="s"),),
    ),
    CommandSpec("reboot", "Restart the device's controller"),
)

_PER_KIND: Final[Mapping[str, tuple[CommandSpec, ...]]] = {
    "lamppost": (
        CommandSpec(
            "set_dim_level",
            "Light output as a share of full; 0 is off",
            (Argument("level", _INT, "Dim level", 0, 100, unit="%"),),
        ),
        CommandSpec(
            "switch",
            "Switch the lamp on (at its dim level) or off, overriding its photocell",
            (Argument("on", ArgumentType.BOOLEAN, "Lamp on"),),
        ),
        CommandSpec(
            "set_schedule",
            "Follow a dimming schedule of the platform",
            (
                Argument(
                    "scheduleId",
                    ArgumentType.STRING,
                    "The schedule's id",
                    pattern=SCHEDULE_ID_PATTERN,
                ),
            ),
        ),
    ),
}

COMMANDS: Mapping[str, Mapping[str, CommandSpec]] = MappingProxyType(
    {
        kind: MappingProxyType({c.name: c for c in (*_PER_KIND.get(kind, ()), *_EVERY_KIND)})
        for kind in DEVICE_KINDS
    }
)


def commands_of(kind: str) -> tuple[CommandSpec, ...]:
    """The commands a device kind understands (none for an unknown kind)."""
    return tuple(COMMANDS.get(kind, {}).values())


def command_problems(kind: str, name: str, args: Mapping[str, object]) -> list[Problem]:
    """Every way the command `name(args)` does not fit device kind `kind` (empty: it fits).

    Fields are named as the API spells them: `name`, `args.<argument>`.
    """
    known = COMMANDS.get(kind)
    if known is None:
        return [Problem("kind", f"unknown device kind {kind!r}")]
    spec = known.get(name)
    if spec is None:
        return [
            Problem(
                "name",
                f"{kind} devices have no command {name!r}; known: {', '.join(sorted(known))}",
            )
        ]
    found: list[Problem] = []
    expected = {a.name: a for a in spec.arguments}
    for argument in spec.arguments:
        if argument.name not in args:
            found.append(Problem(f"args.{argument.name}", f"{name} needs {argument.name}"))
            continue
        found.extend(
            Problem(f"args.{argument.name}", f"{argument.name} {why}")
            for why in argument.problems(args[argument.name])
        )
    found.extend(
        Problem(f"args.{extra}", f"{name} takes no argument {extra!r}")
        for extra in sorted(set(args) - set(expected))
    )
    return found
