"""What of an Observations `$filter` InfluxDB can do: the time range and which Datastreams.

Only conditions ANDed at the top of the filter are taken; each taken one narrows the query
exactly (a raw reading's phenomenonTime is its stored time). Conditions on rollup Datastreams'
windows narrow the query to a superset and stay in the residual, which Python evaluates.
Everything not taken stays in the residual, so pushing down never changes an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api.sta.instant import Instant
from api.sta.odata import Binary, Literal, Node, Path

MIN_NS = 0
MAX_NS = 2**63 - 1
_FLIP = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge", "eq": "eq", "ne": "ne"}
_STREAM_IDS = {("Datastream", "@iot.id"), ("Datastream", "id")}
_DEVICE_IDS = {("Datastream", "Thing", "@iot.id"), ("Datastream", "Thing", "id")}


@dataclass(slots=True)
class Plan:
    """The pushed-down part of a filter and what is left for Python."""

    start_ns: int = MIN_NS
    end_ns: int = MAX_NS
    stream_ids: set[str] | None = None  # only these Datastreams (None: no restriction)
    device_ids: set[str] | None = None  # only Datastreams of these devices
    residual: Node | None = None
    kept: list[Node] = field(default_factory=list)


def conjuncts(node: Node) -> list[Node]:
    """The terms of a top-level AND chain."""
    if isinstance(node, Binary) and node.op == "and":
        return conjuncts(node.left) + conjuncts(node.right)
    return [node]


def _conjoin(nodes: list[Node]) -> Node | None:
    if not nodes:
        return None
    out = nodes[0]
    for node in nodes[1:]:
        out = Binary("and", out, node)
    return out


def _comparison(node: Node) -> tuple[tuple[str, ...], str, object] | None:
    """(path, op, literal value) of `path op literal` or `literal op path`."""
    if not isinstance(node, Binary) or node.op not in _FLIP:
        return None
    if isinstance(node.left, Path) and isinstance(node.right, Literal):
        return node.left.segments, node.op, node.right.value
    if isinstance(node.right, Path) and isinstance(node.left, Literal):
        return node.right.segments, _FLIP[node.op], node.left.value
    return None


def plan(filter_node: Node | None, *, exact_time: bool) -> Plan:
    """Split an Observations filter; `exact_time` when every stream is raw (instants)."""
    out = Plan()
    if filter_node is None:
        return out
    rest: list[Node] = []
    for term in conjuncts(filter_node):
        found = _comparison(term)
        if found is None:
            rest.append(term)
            continue
        path, op, value = found
        if path == ("phenomenonTime",) and isinstance(value, Instant) and op != "ne":
            ns = value.ns
            low, high = {
                "gt": (ns + 1, MAX_NS),
                "ge": (ns, MAX_NS),
                "lt": (MIN_NS, ns),
                "le": (MIN_NS, ns + 1),
                "eq": (ns, ns + 1),
            }[op]
            out.start_ns, out.end_ns = max(out.start_ns, low), min(out.end_ns, high)
            if not exact_time:
                rest.append(term)
        elif path in _STREAM_IDS and op == "eq" and isinstance(value, str):
            out.stream_ids = {value} if out.stream_ids is None else out.stream_ids & {value}
        elif path in _DEVICE_IDS and op == "eq" and isinstance(value, str):
            out.device_ids = {value} if out.device_ids is None else out.device_ids & {value}
        else:
            rest.append(term)
    out.residual = _conjoin(rest)
    return out
