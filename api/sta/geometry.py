"""Points and polygons in WGS84 degrees (planar, as OGC simple features): WKT, GeoJSON, predicates.

Only what the SensorThings geo functions need on device locations: POINT and POLYGON. Anything
else answers 501 rather than a guess.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from api.sta.errors import NotSupported, QuerySyntaxError, QueryTypeError

Coordinate = tuple[float, float]  # (longitude, latitude), degrees
Ring = tuple[Coordinate, ...]


@dataclass(frozen=True, slots=True)
class Geometry:
    """A point (one ring of one coordinate) or a polygon (outer ring first, then holes)."""

    kind: str  # "Point" or "Polygon"
    rings: tuple[Ring, ...]

    @property
    def point(self) -> Coordinate:
        """The coordinate of a point."""
        return self.rings[0][0]

    def wkt(self) -> str:
        """Well-known text."""
        if self.kind == "Point":
            return f"POINT ({_pair(self.point)})"
        return (
            "POLYGON ("
            + ", ".join("(" + ", ".join(_pair(c) for c in ring) + ")" for ring in self.rings)
            + ")"
        )

    def geojson(self) -> dict[str, Any]:
        """A GeoJSON geometry object."""
        if self.kind == "Point":
            return {"type": "Point", "coordinates": list(self.point)}
        return {"type": "Polygon", "coordinates": [[list(c) for c in r] for r in self.rings]}


def _pair(c: Coordinate) -> str:
    return f"{c[0]!r} {c[1]!r}"


def point(lon: float, lat: float) -> Geometry:
    """A point at (lon, lat) degrees."""
    return Geometry("Point", (((float(lon), float(lat)),),))


_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
_PAIR = re.compile(rf"\s*({_NUMBER})\s+({_NUMBER})\s*", re.ASCII)


def _coordinates(text: str) -> Ring:
    out = []
    for part in text.split(","):
        match = _PAIR.fullmatch(part)
        if match is None:
            raise QuerySyntaxError(f"{part.strip()!r} is not a coordinate pair 'lon lat'")
        lon, lat = float(match.group(1)), float(match.group(2))
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise QuerySyntaxError("coordinates must be finite numbers")
        out.append((lon, lat))
    return tuple(out)


def parse_wkt(text: str) -> Geometry:
    """A WKT POINT or POLYGON; QuerySyntaxError if malformed, NotSupported for other types."""
    body = text.strip()
    match = re.fullmatch(r"(?i)(\w+)\s*\((.*)\)", body, re.DOTALL | re.ASCII)
    if match is None:
        raise QuerySyntaxError(f"{text!r} is not well-known text (WKT)")
    kind, inner = match.group(1).upper(), match.group(2)
    if kind == "POINT":
        ring = _coordinates(inner)
        if len(ring) != 1:
            raise QuerySyntaxError("a POINT has exactly one coordinate pair")
        return Geometry("Point", (ring,))
    if kind == "POLYGON":
        rings = re.findall(r"\(([^()]*)\)", inner)
        if not rings or re.sub(r"\([^()]*\)|[\s,]", "", inner):
            raise QuerySyntaxError("a POLYGON is a list of rings: POLYGON ((lon lat, ...))")
        parsed = tuple(_coordinates(r) for r in rings)
        for ring in parsed:
            if len(ring) < 4 or ring[0] != ring[-1]:
                raise QuerySyntaxError("a POLYGON ring has at least 4 points and is closed")
        return Geometry("Polygon", parsed)
    raise NotSupported(f"the geometry type {kind} is not implemented (POINT and POLYGON are)")


def from_geojson(value: object) -> Geometry:
    """A GeoJSON Point or Polygon as a Geometry."""
    if isinstance(value, Geometry):
        return value
    if not isinstance(value, dict):
        raise QueryTypeError("a geo function needs a geometry")
    kind, coords = value.get("type"), value.get("coordinates")
    if kind == "Point" and isinstance(coords, list):
        return point(coords[0], coords[1])
    if kind == "Polygon" and isinstance(coords, list):
        return Geometry("Polygon", tuple(tuple((c[0], c[1]) for c in r) for r in coords))
    raise NotSupported(f"the geometry type {kind} is not implemented")


def _on_segment(p: Coordinate, a: Coordinate, b: Coordinate) -> bool:
    cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    if abs(cross) > 1e-12:
        return False
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _ring_crossings(p: Coordinate, ring: Ring) -> bool:
    inside = False
    for a, b in pairwise(ring):
        if (a[1] > p[1]) != (b[1] > p[1]):
            x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
            if p[0] < x:
                inside = not inside
    return inside


def _locate(p: Coordinate, polygon: Geometry) -> str:
    """'boundary', 'interior' or 'exterior' of the point against the polygon."""
    for ring in polygon.rings:
        if any(_on_segment(p, a, b) for a, b in pairwise(ring)):
            return "boundary"
    outer, holes = polygon.rings[0], polygon.rings[1:]
    if _ring_crossings(p, outer) and not any(_ring_crossings(p, h) for h in holes):
        return "interior"
    return "exterior"


def _segments_cross(a: Coordinate, b: Coordinate, c: Coordinate, d: Coordinate) -> bool:
    def orient(p: Coordinate, q: Coordinate, r: Coordinate) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    if ((o1 > 0) != (o2 > 0)) and ((o3 > 0) != (o4 > 0)) and 0 not in (o1, o2, o3, o4):
        return True
    return any((_on_segment(p, s, t)) for p, s, t in ((c, a, b), (d, a, b), (a, c, d), (b, c, d)))


def intersects(a: Geometry, b: Geometry) -> bool:
    """Whether the two geometries share at least one point (boundaries included)."""
    if a.kind == "Point" and b.kind == "Point":
        return a.point == b.point
    if a.kind == "Point":
        return _locate(a.point, b) != "exterior"
    if b.kind == "Point":
        return _locate(b.point, a) != "exterior"
    for ra in a.rings:
        for rb in b.rings:
            for s, t in pairwise(ra):
                for u, v in pairwise(rb):
                    if _segments_cross(s, t, u, v):
                        return True
    # No boundaries meet: one lies inside the other, or they are apart.
    return _locate(a.rings[0][0], b) == "interior" or _locate(b.rings[0][0], a) == "interior"


def within(a: Geometry, b: Geometry) -> bool:
    """OGC within: `a` lies in `b` and their interiors meet (a point on an edge is not within)."""
    if a.kind == "Point" and b.kind == "Point":
        return a.point == b.point
    if a.kind == "Point":
        return _locate(a.point, b) == "interior"
    if b.kind == "Point":
        return False  # a polygon of positive area never lies in a point
    raise NotSupported("st_within of a polygon in a polygon is not implemented")


def equals(a: Geometry, b: Geometry) -> bool:
    """Same geometry (points: same coordinate; polygons: same rings)."""
    return a == b


def distance(a: Geometry, b: Geometry) -> float:
    """Planar distance between two points in degrees (the CRS's units, as OData says)."""
    if a.kind != "Point" or b.kind != "Point":
        raise NotSupported("geo.distance is implemented between points only")
    return math.dist(a.point, b.point)
