"""Interpreting a `$filter` or `$orderby` tree against one entity, in Python.

OData's null rules: a comparison with null is false except `eq null`/`ne null`; a function or
arithmetic on null gives null; `$filter` keeps an entity only when the expression is true.
A value of the wrong type for an operator is a 400 (QueryTypeError), never a silent false.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from api.sta import geometry
from api.sta.entities import (
    Entity,
    datastream,
    feature_of_interest,
    location,
    observed_property,
    sensor,
    thing,
)
from api.sta.errors import NotSupported, QueryTypeError
from api.sta.instant import Instant, Interval
from api.sta.odata import Binary, Call, Literal, Node, Path, Unary

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def navigate(entity: Entity, name: str) -> Entity | None:
    """A to-one navigation (Thing→Locations too: a device has exactly one Location)."""
    device = entity.device
    if entity.set == "Observations" and name == "Datastream" and entity.stream is not None:
        return datastream(entity.stream)
    if device is None:
        return None
    if name == "Thing" and entity.set in ("Datastreams", "HistoricalLocations"):
        return thing(device)
    if name == "FeatureOfInterest" and entity.set == "Observations":
        return feature_of_interest(device)
    if name == "Locations" and entity.set in ("Things", "HistoricalLocations"):
        return location(device)
    if name in ("Sensor", "ObservedProperty") and entity.set == "Datastreams":
        if name == "Sensor" and entity.kind is not None:
            return sensor(entity.kind)
        if entity.metric is not None:
            return observed_property(entity.metric)
    if name in ("Datastreams", "Observations", "Things", "HistoricalLocations"):
        raise NotSupported(f"$filter through the to-many navigation {name} is not implemented")
    return None


def resolve(path: tuple[str, ...], entity: Entity) -> Any:
    """The value at a property path of the entity (None where it has none)."""
    current: Any = entity
    for segment in path:
        if current is None:
            return None
        if isinstance(current, Entity):
            if segment in ("@iot.id", "id"):
                current = current.id
            elif segment in current.props:
                current = current.props[segment]
            elif segment[:1].isupper():
                current = navigate(current, segment)
            else:
                raise QueryTypeError(f"{current.set} have no property {segment!r}")
        elif isinstance(current, dict):
            current = current.get(segment)
        else:
            raise QueryTypeError(f"{'/'.join(path)}: {segment!r} is not inside an object")
    return current


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        if op == "eq":
            return left is right
        if op == "ne":
            return left is not right
        return False
    if isinstance(left, Interval) or isinstance(right, Interval):
        return _compare_interval(op, left, right)
    numeric = (int, float)
    same = (
        (isinstance(left, numeric) and isinstance(right, numeric)
         and not isinstance(left, bool) and not isinstance(right, bool))
        or type(left) is type(right)
    )  # fmt: skip
    if not same:
        raise QueryTypeError(
            f"cannot compare {type(left).__name__} with {type(right).__name__} ({op})"
        )
    if isinstance(left, geometry.Geometry | dict) and op not in ("eq", "ne"):
        raise QueryTypeError(f"geometries and objects cannot be compared with {op}")
    return bool(_COMPARE[op](left, right))


def _compare_interval(op: str, left: Any, right: Any) -> bool:
    """An interval against an instant: `gt`/`ge` when it starts after (at), `lt`/`le` when
    it ends before (at) it; an interval is never `eq` an instant."""
    if isinstance(left, Interval) and isinstance(right, Interval):
        if op in ("eq", "ne"):
            return (left == right) == (op == "eq")
        raise NotSupported("ordering comparisons between two intervals are not implemented")
    if isinstance(right, Interval):
        flipped = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}.get(op, op)
        return _compare_interval(flipped, right, left)
    if not isinstance(right, Instant):
        raise QueryTypeError("a time interval compares only with a date-time")
    answers: dict[str, bool] = {
        "eq": False,
        "ne": True,
        "gt": left.start > right,
        "ge": left.start >= right,
        "lt": left.end <= right,  # the end is exclusive: it ends before `right`
        "le": left.end <= right,
    }
    return answers[op]


def _number(value: Any, what: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueryTypeError(f"{what} needs numbers, not {type(value).__name__}")
    return value


def _arithmetic(op: str, left: Any, right: Any) -> Any:
    if left is None or right is None:
        return None
    a, b = _number(left, op), _number(right, op)
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if b == 0:
        return None  # division by zero: no value, so the row is not kept
    if isinstance(a, int) and isinstance(b, int):
        # OData truncates toward zero and `mod` takes the dividend's sign (Python floors).
        quotient, remainder = abs(a) // abs(b), abs(a) % abs(b)
        if op == "div":
            return quotient if (a >= 0) == (b >= 0) else -quotient
        return remainder if a >= 0 else -remainder
    return a / b if op == "div" else math.fmod(a, b)


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise QueryTypeError(f"{name}() needs a string, not {type(value).__name__}")
    return value


def _geometry(value: Any, name: str) -> geometry.Geometry:
    if isinstance(value, geometry.Geometry):
        return value
    if isinstance(value, dict):
        return geometry.from_geojson(value)
    raise QueryTypeError(f"{name}() needs geometries")


def _call(name: str, args: list[Any]) -> Any:
    if any(a is None for a in args):
        return None
    if name in ("substringof", "contains", "startswith", "endswith", "indexof", "concat"):
        a, b = (_string(x, name) for x in args)
        if name == "substringof":
            return a in b
        if name == "contains":
            return b in a
        if name == "startswith":
            return a.startswith(b)
        if name == "endswith":
            return a.endswith(b)
        return a.find(b) if name == "indexof" else a + b
    if name in ("length", "tolower", "toupper", "trim"):
        text = _string(args[0], name)
        return {"length": len, "tolower": str.lower, "toupper": str.upper, "trim": str.strip}[name](
            text
        )
    if name == "substring":
        text = _string(args[0], name)
        start = int(_number(args[1], name))
        if len(args) == 3:
            return text[start : start + int(_number(args[2], name))]
        return text[start:]
    if name in ("year", "month", "day", "hour", "minute", "second"):
        moment = args[0].start if isinstance(args[0], Interval) else args[0]
        if not isinstance(moment, Instant):
            raise QueryTypeError(f"{name}() needs a date-time")
        return int(getattr(moment.datetime, name))
    if name in ("round", "floor", "ceiling"):
        value = _number(args[0], name)
        if name == "round":
            # OData rounds halves away from zero (Python's round() would go to even).
            return int(math.copysign(math.floor(abs(value) + 0.5), value))
        return math.floor(value) if name == "floor" else math.ceil(value)
    first, second = (_geometry(x, name) for x in args)
    if name in ("geo.intersects", "st_intersects"):
        return geometry.intersects(first, second)
    if name == "st_disjoint":
        return not geometry.intersects(first, second)
    if name == "st_within":
        return geometry.within(first, second)
    if name == "st_contains":
        return geometry.within(second, first)
    if name == "st_equals":
        return geometry.equals(first, second)
    return geometry.distance(first, second)


def evaluate(node: Node, entity: Entity) -> Any:
    """The value of the expression for this entity."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Path):
        return resolve(node.segments, entity)
    if isinstance(node, Unary):
        value = evaluate(node.operand, entity)
        if node.op == "not":
            if value is None:
                return None
            if not isinstance(value, bool):
                raise QueryTypeError("not needs a boolean")
            return not value
        return None if value is None else -_number(value, "-")
    if isinstance(node, Binary):
        if node.op in ("and", "or"):
            left = evaluate(node.left, entity)
            right = evaluate(node.right, entity)
            for value in (left, right):
                if value is not None and not isinstance(value, bool):
                    raise QueryTypeError(f"{node.op} needs booleans")
            if node.op == "and":
                return bool(left) and bool(right)
            return bool(left) or bool(right)
        left, right = evaluate(node.left, entity), evaluate(node.right, entity)
        if node.op in _COMPARE:
            return _compare(node.op, left, right)
        return _numeric(_arithmetic, node.op, left, right)
    assert isinstance(node, Call)
    return _numeric(_call, node.name, [evaluate(a, entity) for a in node.args])


def _numeric(function: Callable[..., Any], *args: Any) -> Any:
    """Arithmetic beyond floats (overflow, infinity, NaN) is a 400, not a crash."""
    try:
        return function(*args)
    except (OverflowError, ValueError, ZeroDivisionError) as exc:
        raise QueryTypeError(f"the arithmetic fails: {exc}") from None


def matches(node: Node | None, entity: Entity) -> bool:
    """Whether `$filter` keeps the entity."""
    if node is None:
        return True
    value = evaluate(node, entity)
    if value is not None and not isinstance(value, bool):
        raise QueryTypeError("$filter must be a boolean expression")
    return value is True


class _Key:
    """A sort key where null sorts first and values of different types never meet."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        if isinstance(value, Interval):
            value = value.start
        if isinstance(value, dict | geometry.Geometry):
            raise QueryTypeError("$orderby cannot sort by an object or geometry")
        self.value = value

    def __lt__(self, other: _Key) -> bool:
        if self.value is None:
            return other.value is not None
        if other.value is None:
            return False
        try:
            return bool(self.value < other.value)
        except TypeError:
            raise QueryTypeError("$orderby meets values of different types") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


def sort(entities: list[Entity], orderby: tuple[tuple[Node, bool], ...]) -> list[Entity]:
    """Entities sorted by `$orderby` (stable; by `@iot.id` last)."""
    out = sorted(entities, key=lambda e: e.id)
    for node, descending in reversed(orderby):
        out.sort(key=lambda e, n=node: _Key(evaluate(n, e)), reverse=descending)  # type: ignore[misc]
    return out
