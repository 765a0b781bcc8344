"""Bulk import and export of devices: CSV and GeoJSON (RFC 7946, CRS84).

Both formats use the API's camelCase property names. A CSV file has one device per row with
`latitude` and `longitude` columns; a GeoJSON file is a FeatureCollection of Points with the
other properties under `properties`. An import checks every row (its parsing, the domain rules,
the registry) and reports every bad one with its line or feature number; a file with any bad
row imports nothing.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from devices.errors import ImportRejected, Problem
from devices.model import Device
from devices.provisioning import Credentials, issue_credentials
from devices.registry import Registry

CRS84: Final = "urn:ogc:def:crs:OGC:1.3:CRS84"
MAX_DEVICES: Final = 100_000  # per file; larger fleets import in several files

# Column order of the CSV export: identity, place, the sensor-register fields, then the rest.
COLUMNS: Final = (
    "deviceId",
    "tenant",
    "kind",
    "extraKinds",
    "name",
    "latitude",
    "longitude",
    "owner",
    "observationGoal",
    "legalGround",
    "personalData",
    "activeUntil",
    "installedOn",
    "retiredAt",
    "ipv6Address",
    "intervalSeconds",
    "firmware",
)
_REQUIRED: Final = ("deviceId", "tenant", "kind", "name", "latitude", "longitude")
# The column of each Device attribute whose name differs (for the registry's problems).
_COLUMN_OF: Final = {
    "device_id": "deviceId",
    "extra_kinds": "extraKinds",
    "observation_goal": "observationGoal",
    "legal_ground": "legalGround",
    "personal_data": "personalData",
    "active_until": "activeUntil",
    "installed_on": "installedOn",
    "retired_at": "retiredAt",
    "ipv6_address": "ipv6Address",
    "interval_s": "intervalSeconds",
}
_TRUE: Final = frozenset({"true", "yes", "ja", "1"})
_FALSE: Final = frozenset({"false", "no", "nee", "0", ""})


class Format(enum.StrEnum):
    """A file format of the registry's import and export."""

    CSV = "csv"
    GEOJSON = "geojson"

    @classmethod
    def of_path(cls, path: Path) -> Format:
        """The format a file name suggests (.csv, else GeoJSON for .geojson and .json)."""
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return cls.CSV
        if suffix in (".geojson", ".json"):
            return cls.GEOJSON
        raise ValueError(f"cannot tell the format of {path.name}; name it .csv or .geojson")


@dataclass(frozen=True, slots=True)
class Parsed:
    """The devices read from a file, where each came from, and what could not be read."""

    devices: list[Device]
    labels: list[str]
    problems: list[Problem]


@dataclass(frozen=True, slots=True)
class Imported:
    """The outcome of an import: the devices stored and, when asked for, their broker logins."""

    devices: list[Device]
    credentials: list[Credentials]


# -- reading -------------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _number(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not {value!r}")  # noqa: TRY004 - a row problem
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = _text(value)
        if text is None:
            raise ValueError(f"{name} is missing")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number")
    return number


def _optional(name: str, value: object, parse: Callable[[str, object], Any]) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse(name, value)


def _date(name: str, value: object) -> date:
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a date (YYYY-MM-DD)") from None


def _moment(name: str, value: object) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} {value!r} needs a time zone (Z or an offset)")
    return moment


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} {value!r} is not true or false")


def _kinds(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    text = _text(value) or ""
    return tuple(k.strip() for k in text.replace(",", ";").split(";") if k.strip())


def device_of(properties: Mapping[str, object]) -> tuple[Device | None, list[Problem]]:
    """A device from camelCase properties (strings or JSON values), or the problems found."""
    problems = [
        Problem(name, f"{name} is missing")
        for name in _REQUIRED
        if _text(properties.get(name)) is None
    ]
    if problems:
        return None, problems
    values: dict[str, Any] = {}
    for field_name, name, parse in (
        ("latitude", "latitude", _number),
        ("longitude", "longitude", _number),
        ("interval_s", "intervalSeconds", lambda n, v: _optional(n, v, _number)),
        ("installed_on", "installedOn", lambda n, v: _optional(n, v, _date)),
        ("active_until", "activeUntil", lambda n, v: _optional(n, v, _date)),
        ("retired_at", "retiredAt", lambda n, v: _optional(n, v, _moment)),
        ("personal_data", "personalData", lambda n, v: False if v is None else _flag(n, v)),
    ):
        try:
            values[field_name] = parse(name, properties.get(name))
        except ValueError as exc:
            problems.append(Problem(name, str(exc)))
    if problems:
        return None, problems
    device = Device(
        device_id=str(properties["deviceId"]).strip(),
        tenant=str(properties["tenant"]).strip(),
        kind=str(properties["kind"]).strip(),
        name=str(properties["name"]).strip(),
        extra_kinds=_kinds(properties.get("extraKinds")),
        ipv6_address=_text(properties.get("ipv6Address")),
        firmware=_text(properties.get("firmware")),
        owner=_text(properties.get("owner")),
        observation_goal=_text(properties.get("observationGoal")),
        legal_ground=_text(properties.get("legalGround")),
        **values,
    )
    return device, []


def parse_csv(text: str) -> Parsed:
    """Devices from CSV text with a header row (comma or semicolon separated)."""
    text = text.removeprefix("\ufeff")  # spreadsheets like to start with a byte-order mark
    header_line = text.split("\n", 1)[0]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in reader.fieldnames or []]
    except csv.Error as exc:
        return Parsed([], [], [Problem(None, f"not CSV: {exc}", "line 1")])
    problems = [
        Problem(name, f"column {name!r} is missing", "line 1")
        for name in _REQUIRED
        if name not in header
    ]
    problems += [
        Problem(name, f"unknown column {name!r}; known: {', '.join(COLUMNS)}", "line 1")
        for name in header
        if name not in COLUMNS
    ]
    if problems:
        return Parsed([], [], problems)
    reader.fieldnames = header
    devices: list[Device] = []
    labels: list[str] = []
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row:
                problems.append(Problem(None, "more values than columns", where))
                continue
            if len(devices) + len(problems) >= MAX_DEVICES:
                problems.append(
                    Problem(None, f"more than {MAX_DEVICES} devices in one file", where)
                )
                break
            device, own = device_of(row)
            problems += [Problem(p.field, p.reason, where) for p in own]
            if device is not None:
                devices.append(device)
                labels.append(where)
    except csv.Error as exc:
        problems.append(Problem(None, f"not CSV: {exc}", f"line {reader.line_num}"))
    if not devices and not problems:
        problems.append(Problem(None, "the file holds no devices", "line 2"))
    return Parsed(devices, labels, problems)


def parse_geojson(text: str) -> Parsed:
    """Devices from a GeoJSON FeatureCollection of Points (longitude, latitude in CRS84)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return Parsed([], [], [Problem(None, f"not JSON: {exc.msg}", f"line {exc.lineno}")])
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        return Parsed([], [], [Problem(None, "not a GeoJSON FeatureCollection", "document")])
    crs = document.get("crs")
    if crs is not None and json.dumps(crs).find("CRS84") < 0:
        return Parsed(
            [], [], [Problem("crs", "coordinates must be CRS84 (longitude, latitude)", "document")]
        )
    features = document.get("features")
    if not isinstance(features, list) or not features:
        return Parsed([], [], [Problem("features", "the collection holds no features", "document")])
    if len(features) > MAX_DEVICES:
        return Parsed(
            [],
            [],
            [Problem("features", f"more than {MAX_DEVICES} devices in one file", "document")],
        )
    devices: list[Device] = []
    labels: list[str] = []
    problems: list[Problem] = []
    for number, feature in enumerate(features, start=1):
        where = f"feature {number}"
        own, properties = _feature_properties(feature)
        if not own:
            device, own = device_of(properties)
            if device is not None:
                devices.append(device)
                labels.append(where)
        problems += [Problem(p.field, p.reason, where) for p in own]
    return Parsed(devices, labels, problems)


def _feature_properties(feature: object) -> tuple[list[Problem], dict[str, object]]:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return [Problem(None, "not a GeoJSON Feature")], {}
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        return [Problem("geometry", "the geometry must be a Point")], {}
    coordinates = geometry.get("coordinates")
    if not isinstance(coordinates, list) or len(coordinates) not in (2, 3):
        return [Problem("geometry", "a Point needs [longitude, latitude]")], {}
    properties = feature.get("properties")
    if not isinstance(properties, dict):
        return [Problem("properties", "the feature has no properties")], {}
    unknown = sorted(set(properties) - set(COLUMNS) - {"latitude", "longitude"})
    if unknown:
        return [Problem(n, f"unknown property {n!r}") for n in unknown], {}
    return [], {**properties, "longitude": coordinates[0], "latitude": coordinates[1]}


def parse(text: str, fmt: Format) -> Parsed:
    """Devices from a file's text in format `fmt`."""
    return parse_csv(text) if fmt is Format.CSV else parse_geojson(text)


def import_devices(
    registry: Registry,
    text: str,
    fmt: Format,
    *,
    issue_logins: bool = True,
    allowed_tenants: Collection[str] | None = None,
) -> Imported:
    """Store every device of the file, or none: ImportRejected lists each bad row.

    With `allowed_tenants`, a row of any other tenant is a bad row (an API key's reach).
    """
    parsed = parse(text, fmt)
    if allowed_tenants is not None:
        parsed.problems.extend(
            Problem("tenant", f"tenant {d.tenant!r} is outside this key's tenants", label)
            for d, label in zip(parsed.devices, parsed.labels, strict=True)
            if d.tenant not in allowed_tenants
        )
    if parsed.problems:
        # Also check the rows that could be read, so one answer names every bad row.
        found = registry.check_new(parsed.devices, parsed.labels)
        problems = parsed.problems + _in_columns(found)
        order = {label: i for i, label in enumerate(parsed.labels)}
        problems.sort(key=lambda p: _position(p.where, order))
        raise ImportRejected.of(problems)
    credentials = [issue_credentials(d) for d in parsed.devices] if issue_logins else []
    try:
        registry.add_devices(
            parsed.devices,
            password_hashes={c.device_id: c.password_hash for c in credentials},
            labels=parsed.labels,
        )
    except ImportRejected as exc:
        raise ImportRejected.of(_in_columns(exc.problems)) from None
    return Imported(parsed.devices, credentials)


def _in_columns(problems: Sequence[Problem]) -> list[Problem]:
    """The registry's problems (named by Device attributes) named by the file's columns."""
    return [replace(p, field=_COLUMN_OF.get(p.field or "", p.field)) for p in problems]


def _position(where: str | None, order: Mapping[str, int]) -> tuple[int, int]:
    # Problems sorted by their line or feature number, the file's own problems first.
    if where is None or not where.split()[-1].isdigit():
        return (-1, 0)
    return (int(where.split()[-1]), order.get(where, 0))


# -- writing -------------------------------------------------------------------------------------


def properties_of(device: Device) -> dict[str, object]:
    """A device's camelCase properties as JSON values (without its location)."""
    return {
        "deviceId": device.device_id,
        "tenant": device.tenant,
        "kind": device.kind,
        "extraKinds": list(device.extra_kinds),
        "name": device.name,
        "owner": device.owner,
        "observationGoal": device.observation_goal,
        "legalGround": device.legal_ground,
        "personalData": device.personal_data,
        "activeUntil": device.active_until.isoformat() if device.active_until else None,
        "installedOn": device.installed_on.isoformat() if device.installed_on else None,
        "retiredAt": device.retired_at.isoformat().replace("+00:00", "Z")
        if device.retired_at
        else None,
        "ipv6Address": device.ipv6_address,
        "intervalSeconds": device.interval_s,
        "firmware": device.firmware,
    }


def export_geojson(devices: Sequence[Device]) -> str:
    """A GeoJSON FeatureCollection of the devices, coordinates [longitude, latitude] in CRS84."""
    document = {
        "type": "FeatureCollection",
        # RFC 7946 makes CRS84 the only CRS; we name it anyway for older GIS tools.
        "crs": {"type": "name", "properties": {"name": CRS84}},
        "features": [
            {
                "type": "Feature",
                "id": d.device_id,
                "geometry": {"type": "Point", "coordinates": [d.longitude, d.latitude]},
                "properties": properties_of(d),
            }
            for d in devices
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


def export_csv(devices: Sequence[Device]) -> str:
    """The devices as CSV with the sensor-register fields, one row each, header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for device in devices:
        values = properties_of(device)
        values["extraKinds"] = ";".join(device.extra_kinds)
        values["latitude"] = repr(device.latitude)
        values["longitude"] = repr(device.longitude)
        values["personalData"] = "true" if device.personal_data else "false"
        writer.writerow(["" if values[c] is None else values[c] for c in COLUMNS])
    return buffer.getvalue()


def export(devices: Sequence[Device], fmt: Format) -> str:
    """The devices in format `fmt`."""
    return export_csv(devices) if fmt is Format.CSV else export_geojson(devices)
