"""InfluxDB line protocol: escaping and formatting points (a plain format, ~2 us a point)."""

from __future__ import annotations

from collections.abc import Mapping

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": "\\n"})


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return text.translate(_KEY_ESCAPES)


def escape_measurement(text: str) -> str:
    """Escape a measurement name."""
    return text.translate(_MEASUREMENT_ESCAPES)


def string_field(text: str) -> str:
    """A quoted string field value."""
    return '"' + text.translate(_STRING_ESCAPES) + '"'


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """`measurement,tag=value,...` with tags sorted by key, as InfluxDB prefers."""
    parts = [escape_measurement(measurement)]
    parts.extend(f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v != "")
    return ",".join(parts)


def format_field(value: float | int | bool | str) -> str:
    """One field value: floats as shortest round-trip decimals, ints with `i`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return string_field(value)


def line(series: str, fields: Mapping[str, float | int | bool | str], ts_ns: int) -> str:
    """One point of line protocol (no trailing newline); `ts_ns` in nanoseconds since the epoch."""
    body = ",".join(f"{escape_key(k)}={format_field(v)}" for k, v in fields.items())
    return f"{series} {body} {ts_ns}"
