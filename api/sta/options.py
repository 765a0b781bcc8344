"""The query options of a SensorThings request: `$top`, `$skip`, `$count`, `$orderby`,
`$select`, `$expand` (nested, with options of its own) and `$filter`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from api.sta.errors import NotSupported, QuerySyntaxError
from api.sta.odata import Node, parse, parse_orderby

DEFAULT_TOP: Final = 100
MAX_TOP: Final = 10_000
MAX_EXPAND_DEPTH: Final = 4
_KNOWN: Final = frozenset({"$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter"})
_UNIMPLEMENTED: Final = frozenset({"$resultFormat", "$search", "$format", "$apply"})


@dataclass(frozen=True, slots=True)
class Query:
    """The options of one collection (or entity): what to keep, in which order, how much."""

    top: int | None = None
    skip: int = 0
    count: bool = False
    filter: Node | None = None
    orderby: tuple[tuple[Node, bool], ...] = ()
    select: tuple[str, ...] | None = None
    expand: tuple[Expand, ...] = field(default=())
    raw: tuple[tuple[str, str], ...] = ()  # the options as given, for @iot.nextLink


@dataclass(frozen=True, slots=True)
class Expand:
    """One navigation property to expand, with its own options."""

    name: str
    query: Query


def _integer(name: str, text: str, maximum: int) -> int:
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is true, int("²") fails
        raise QuerySyntaxError(f"{name} must be a non-negative integer, not {text!r}")
    value = int(text)
    if value > maximum:
        raise QuerySyntaxError(f"{name} may be at most {maximum}")
    return value


def _split(text: str, separator: str) -> list[str]:
    """Split at `separator` outside parentheses and quoted strings."""
    parts, depth, quoted, start = [], 0, False, 0
    for at, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth < 0:
                raise QuerySyntaxError(f"unbalanced ')' in {text!r}")
        elif not quoted and depth == 0 and ch == separator:
            parts.append(text[start:at])
            start = at + 1
    if depth != 0 or quoted:
        raise QuerySyntaxError(f"unbalanced parentheses or quotes in {text!r}")
    parts.append(text[start:])
    return parts


def parse_query(options: Mapping[str, str], depth: int = 0) -> Query:
    """The Query of `options` (name to text); 400 for a malformed one, 501 for unimplemented."""
    for name in options:
        if name in _UNIMPLEMENTED:
            raise NotSupported(f"the query option {name} is not implemented")
        if name.startswith("$") and name not in _KNOWN:
            raise QuerySyntaxError(f"unknown query option {name}")
    top = None
    if "$top" in options:
        # More than a page holds is served a page at a time (with @iot.nextLink), as
        # SensorThings' server-driven paging allows, rather than refused.
        top = min(_integer("$top", options["$top"], 10**9), MAX_TOP)
    skip = _integer("$skip", options["$skip"], 10**9) if "$skip" in options else 0
    count_text = options.get("$count", "false")
    if count_text not in ("true", "false"):
        raise QuerySyntaxError("$count must be true or false")
    select = None
    if "$select" in options:
        select = tuple(s.strip() for s in options["$select"].split(","))
        if not all(select):
            raise QuerySyntaxError("$select lists property names separated by commas")
    expand: list[Expand] = []
    if "$expand" in options:
        if depth >= MAX_EXPAND_DEPTH:
            raise QuerySyntaxError(f"$expand may nest at most {MAX_EXPAND_DEPTH} levels")
        expand = [_expand(item.strip(), depth) for item in _split(options["$expand"], ",")]
    return Query(
        top=top,
        skip=skip,
        count=count_text == "true",
        filter=parse(options["$filter"]) if "$filter" in options else None,
        orderby=parse_orderby(options["$orderby"]) if "$orderby" in options else (),
        select=select,
        expand=tuple(expand),
        raw=tuple(options.items()),
    )


def _expand(item: str, depth: int) -> Expand:
    if not item:
        raise QuerySyntaxError("$expand lists navigation properties separated by commas")
    name, paren, rest = item.partition("(")
    name = name.strip()
    inner: dict[str, str] = {}
    if paren:
        if not rest.endswith(")"):
            raise QuerySyntaxError(f"unbalanced parentheses in $expand item {item!r}")
        for option in _split(rest[:-1], ";"):
            key, eq, value = option.partition("=")
            if not eq:
                raise QuerySyntaxError(f"{option!r} in $expand is not $option=value")
            inner[key.strip()] = value.strip()
    # `Datastreams/Observations` is shorthand for nesting one in the other.
    head, slash, tail = name.partition("/")
    if slash:
        nested = _expand(tail + (f"({rest}" if paren else ""), depth + 1)
        return Expand(head, Query(expand=(nested,)))
    if not name.isidentifier():
        raise QuerySyntaxError(f"{name!r} is not a navigation property")
    return Expand(name, parse_query(inner, depth + 1))
