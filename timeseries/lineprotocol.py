"""InfluxDB line protocol: typed points and their one encoding (a plain format, ~2 us a point).

The pipeline passes `Point`s between its stages; only the writer's caller turns them into text,
through `Encoder`, so nothing upstream ever parses line protocol back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": "\\n"})

FieldValue = float | int | bool | str
Tags = tuple[tuple[str, str], ...]

# Series keys and field-name prefixes remembered by an Encoder; past this it starts afresh
# (a registry of this many devices still encodes correctly, only a little slower).
_REMEMBERED: Final = 200_000


@dataclass(frozen=True, slots=True)
class Point:
    """One point: a measurement, its tags, its fields and its time.

    `tags` are (key, value) pairs sorted by key (see `tags`), so that a point is hashable and
    its series key can be remembered; pairs with an empty value are left out when encoded.
    `fields` keeps its order in the encoded line. `time_ns`: nanoseconds since the epoch.
    """

    measurement: str
    tags: Tags
    fields: Mapping[str, FieldValue]
    time_ns: int

    def __init__(
        self, measurement: str, tags: Tags, fields: Mapping[str, FieldValue], time_ns: int
    ) -> None:
        # The generated __init__ of a frozen dataclass goes through object.__setattr__ for each
        # field; the slots' own setters take half the time, and a point is made per reading.
        _set_measurement(self, measurement)
        _set_tags(self, tags)
        _set_fields(self, fields)
        _set_time_ns(self, time_ns)


_set_measurement = Point.__dict__["measurement"].__set__
_set_tags = Point.__dict__["tags"].__set__
_set_fields = Point.__dict__["fields"].__set__
_set_time_ns = Point.__dict__["time_ns"].__set__


def tags(**values: str) -> Tags:
    """Tag pairs in the order a Point wants them: sorted by key."""
    return tuple(sorted(values.items()))


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return text.translate(_KEY_ESCAPES)


def escape_measurement(text: str) -> str:
    """Escape a measurement name."""
    return text.translate(_MEASUREMENT_ESCAPES)


def string_field(text: str) -> str:
    """A quoted string field value."""
    return '"' + text.translate(_STRING_ESCAPES) + '"'


def series_key(measurement: str, tag_pairs: Mapping[str, str] | Tags) -> str:
    """`measurement,tag=value,...` with tags sorted by key, as InfluxDB prefers."""
    pairs = tag_pairs.items() if isinstance(tag_pairs, Mapping) else tag_pairs
    parts = [escape_measurement(measurement)]
    parts.extend(f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(pairs) if v != "")
    return ",".join(parts)


def format_field(value: FieldValue) -> str:
    """One field value: floats as shortest round-trip decimals, ints with `i`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return string_field(value)


class Encoder:
    """Turns points into lines, remembering series keys and escaped field names.

    Not thread-safe; one per writer of points. Encoding is what the worker pays per point, so
    the common cases (a float, an int, a remembered series) take the shortest path.
    """

    __slots__ = ("_plain", "_series")

    def __init__(self) -> None:
        self._series: dict[tuple[str, Tags], str] = {}
        self._plain: set[str] = set()  # field names seen that need no escaping

    def line(self, point: Point) -> str:
        """One point of line protocol (no trailing newline)."""
        series = self._series.get((point.measurement, point.tags))
        if series is None:
            series = self._remember_series(point)
        return self.line_in(series, point)

    def line_in(self, series: str, point: Point) -> str:
        """`line`, for a caller that holds the point's series key already (`series_key` of its
        measurement and tags, which is what this trusts it to be): the decoder keeps one per
        device and kind, and so saves hashing the tags of every point it encodes."""
        plain = self._plain
        parts: list[str] = []
        append = parts.append
        for name, value in point.fields.items():
            # The common fields (floats and ints under a plain name) in one formatting step.
            if name in plain:
                kind = type(value)
                if kind is float:
                    append(f"{name}={value!r}")
                    continue
                if kind is int:
                    append(f"{name}={value}i")
                    continue
            append(self._field(name, value))
        return f"{series} {','.join(parts)} {point.time_ns}"

    def lines(self, points: Iterable[Point]) -> list[str]:
        """Lines of several points, in their order."""
        line = self.line
        return [line(point) for point in points]

    def _remember_series(self, point: Point) -> str:
        if len(self._series) >= _REMEMBERED:
            self._series.clear()
        series = series_key(point.measurement, point.tags)
        self._series[(point.measurement, point.tags)] = series
        return series

    def _field(self, name: str, value: FieldValue) -> str:
        escaped = escape_key(name)
        if escaped == name:
            if len(self._plain) >= _REMEMBERED:
                self._plain.clear()
            self._plain.add(name)
        return f"{escaped}={format_field(value)}"


def encode(point: Point) -> str:
    """One point as line protocol, without remembering anything (for occasional points)."""
    return Encoder().line(point)


def line(series: str, fields: Mapping[str, FieldValue], ts_ns: int) -> str:
    """One line from a ready series key (`series_key`); `ts_ns` in nanoseconds since the epoch."""
    body = ",".join(f"{escape_key(k)}={format_field(v)}" for k, v in fields.items())
    return f"{series} {body} {ts_ns}"
