"""The OData expression language of SensorThings `$filter` and `$orderby`: tokens, AST, parser.

A small Pratt parser builds a tree of frozen dataclasses; `unparse` prints a tree back as text
that parses to the same tree (fully parenthesised). Nothing is ever evaluated as Python: the tree
is interpreted by `api.sta.evaluate` and partly translated to InfluxQL by `api.sta.pushdown`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from api.sta.errors import NotSupported, QuerySyntaxError
from api.sta.geometry import Geometry, parse_wkt
from api.sta.instant import Instant

MAX_EXPRESSION_CHARS: Final = 4000
MAX_DEPTH: Final = 64

Scalar = str | int | float | bool | Instant | Geometry | None


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: string, number, boolean, null, instant (ns) or geometry."""

    value: Scalar


@dataclass(frozen=True, slots=True)
class Path:
    """A property, possibly through navigation: `Datastream/Thing/name`, `properties/owner`."""

    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unary:
    """`not x` or `-x`."""

    op: str  # "not" or "-"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    """A comparison, logical or arithmetic operator between two expressions."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Call:
    """A function call: `startswith(name, 'x')`, `geo.intersects(location, geography'...')`."""

    name: str
    args: tuple[Node, ...]


Node = Literal | Path | Unary | Binary | Call

COMPARISONS: Final = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
ARITHMETIC: Final = frozenset({"add", "sub", "mul", "div", "mod"})
# Binding powers: higher binds tighter (OData's precedence, 5.1.1.15).
_INFIX: Final = {
    "or": 10,
    "and": 20,
    **dict.fromkeys(COMPARISONS, 30),
    "add": 40,
    "sub": 40,
    "mul": 50,
    "div": 50,
    "mod": 50,
}
_PREFIX_NOT: Final = 25  # binds looser than comparisons: `not a eq b` is `not (a eq b)`
_PREFIX_NEG: Final = 60

# Implemented functions and how many arguments each takes.
FUNCTIONS: Final[dict[str, tuple[int, ...]]] = {
    "substringof": (2,),
    "contains": (2,),
    "startswith": (2,),
    "endswith": (2,),
    "length": (1,),
    "indexof": (2,),
    "substring": (2, 3),
    "tolower": (1,),
    "toupper": (1,),
    "trim": (1,),
    "concat": (2,),
    "year": (1,),
    "month": (1,),
    "day": (1,),
    "hour": (1,),
    "minute": (1,),
    "second": (1,),
    "round": (1,),
    "floor": (1,),
    "ceiling": (1,),
    "geo.intersects": (2,),
    "geo.distance": (2,),
    "st_within": (2,),
    "st_intersects": (2,),
    "st_contains": (2,),
    "st_disjoint": (2,),
    "st_equals": (2,),
}
# Functions of SensorThings 1.1 (table 12) that we do not implement: 501, not 400.
UNIMPLEMENTED: Final = frozenset(
    {
        "date",
        "time",
        "totaloffsetminutes",
        "now",
        "mindatetime",
        "maxdatetime",
        "fractionalseconds",
        "geo.length",
        "st_touches",
        "st_overlaps",
        "st_crosses",
        "st_relate",
    }
)

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<geography>geography'(?P<wkt>[^']*)')
  | (?P<string>'(?:[^']|'')*')
  | (?P<name>@?[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[()/,-])
    """,
    re.VERBOSE | re.ASCII,  # \d and \s: ASCII digits and spaces only
)


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text and where it starts (characters)."""

    kind: str
    text: str
    at: int


def tokenize(text: str) -> list[Token]:
    """The tokens of an expression; QuerySyntaxError names the first character not understood."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise QuerySyntaxError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise QuerySyntaxError(f"unexpected character {text[at]!r} at position {at}")
        kind = match.lastgroup or ""
        if kind == "wkt":
            kind = "geography"
        if kind != "ws":
            tokens.append(Token(kind, match.group(0), at))
        at = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


_DATETIME = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def _instant(text: str) -> Instant:
    """A date-time literal to the nanosecond (Python's datetime would cut it to microseconds)."""
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise QuerySyntaxError(f"{text!r} is not a valid date-time")
    zone = "+00:00" if match.group("zone") == "Z" else match.group("zone")
    try:
        whole = datetime.fromisoformat(match.group("base") + zone)
    except ValueError:
        raise QuerySyntaxError(f"{text!r} is not a valid date-time") from None
    fraction = int((match.group("fraction") or "").ljust(9, "0"))
    return Instant(Instant.of(whole).ns + fraction)


def _number(text: str) -> int | float:
    if re.fullmatch(r"[0-9]+", text):
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise QuerySyntaxError(f"the number {text} is out of range")
    return value


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            shown = repr(token.text) if token.kind != "end" else "the end"
            raise QuerySyntaxError(f"expected {text!r} at position {token.at}, found {shown}")

    def expression(self, power: int = 0) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QuerySyntaxError(f"the expression is nested deeper than {MAX_DEPTH}")
        left = self.prefix()
        compared = False  # whether this level already made a comparison (no chains)
        while True:
            token = self.peek()
            op = token.text
            bound = _INFIX.get(op) if token.kind == "name" else None
            if bound is None or bound <= power:
                break
            self.take()
            # Comparisons do not chain: `a eq b eq c` is malformed.
            right = self.expression(bound + 1 if op in COMPARISONS else bound)
            if op in COMPARISONS:
                if compared:
                    raise QuerySyntaxError(f"comparisons cannot be chained (position {token.at})")
                compared = True
            left = Binary(op, left, right)
        self.depth -= 1
        return left

    def prefix(self) -> Node:
        token = self.take()
        if token.kind == "punct" and token.text == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if token.kind == "punct" and token.text == "-":
            operand = self.expression(_PREFIX_NEG)
            if isinstance(operand, Literal) and type(operand.value) in (int, float):
                return Literal(-operand.value)  # type: ignore[operator]
            return Unary("-", operand)
        if token.kind == "number":
            return Literal(_number(token.text))
        if token.kind == "datetime":
            return Literal(_instant(token.text))
        if token.kind == "string":
            return Literal(token.text[1:-1].replace("''", "'"))
        if token.kind == "geography":
            return Literal(parse_wkt(token.text[len("geography'") : -1]))
        if token.kind == "name":
            return self.name(token)
        shown = repr(token.text) if token.kind != "end" else "the end"
        raise QuerySyntaxError(f"expected a value at position {token.at}, found {shown}")

    def name(self, token: Token) -> Node:
        word = token.text
        if word == "not":
            return Unary("not", self.expression(_PREFIX_NOT))
        if word in ("true", "false"):
            return Literal(word == "true")
        if word == "null":
            return Literal(None)
        if self.peek().text == "(":
            return self.call(token)
        if word in _INFIX:
            raise QuerySyntaxError(f"expected a value at position {token.at}, found {word!r}")
        segments = [word]
        while self.peek().text == "/":
            self.take()
            part = self.take()
            if part.kind != "name":
                raise QuerySyntaxError(f"expected a property name at position {part.at}")
            segments.append(part.text)
        return Path(tuple(segments))

    def call(self, token: Token) -> Call:
        name = token.text
        if name not in FUNCTIONS:
            if name.lower() in UNIMPLEMENTED:
                raise NotSupported(f"the function {name}() is not implemented")
            raise QuerySyntaxError(f"unknown function {name}() at position {token.at}")
        self.expect("(")
        args: list[Node] = []
        if self.peek().text != ")":
            args.append(self.expression())
            while self.peek().text == ",":
                self.take()
                args.append(self.expression())
        self.expect(")")
        if len(args) not in FUNCTIONS[name]:
            wanted = " or ".join(str(n) for n in FUNCTIONS[name])
            raise QuerySyntaxError(f"{name}() takes {wanted} arguments, not {len(args)}")
        return Call(name, tuple(args))


def parse(text: str) -> Node:
    """The tree of one expression (`$filter`); QuerySyntaxError (400) or NotSupported (501)."""
    parser = _Parser(text)
    if parser.peek().kind == "end":
        raise QuerySyntaxError("the expression is empty")
    node = parser.expression()
    rest = parser.peek()
    if rest.kind != "end":
        raise QuerySyntaxError(f"unexpected {rest.text!r} at position {rest.at}")
    return node


def parse_orderby(text: str) -> tuple[tuple[Node, bool], ...]:
    """`$orderby`: expressions, each with whether it sorts descending."""
    parser = _Parser(text)
    keys: list[tuple[Node, bool]] = []
    while True:
        node = parser.expression()
        descending = False
        if parser.peek().kind == "name" and parser.peek().text in ("asc", "desc"):
            descending = parser.take().text == "desc"
        keys.append((node, descending))
        token = parser.take()
        if token.kind == "end":
            return tuple(keys)
        if token.text != ",":
            raise QuerySyntaxError(f"unexpected {token.text!r} at position {token.at}")


def _literal_text(value: Scalar) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Instant):
        return str(value)
    if isinstance(value, Geometry):
        return f"geography'{value.wkt()}'"
    return "'" + value.replace("'", "''") + "'"


def unparse(node: Node) -> str:
    """The expression as text; `parse(unparse(node)) == node` for every tree `parse` makes."""
    if isinstance(node, Literal):
        return _literal_text(node.value)
    if isinstance(node, Path):
        return "/".join(node.segments)
    if isinstance(node, Unary):
        # Parenthesised whole: `not` binds looser than arithmetic, so `not x add y` would
        # read back as `not (x add y)`.
        spacer = " " if node.op == "not" else ""
        return f"({node.op}{spacer}({unparse(node.operand)}))"
    if isinstance(node, Binary):
        return f"({unparse(node.left)} {node.op} {unparse(node.right)})"
    return f"{node.name}({', '.join(unparse(a) for a in node.args)})"


def paths(node: Node) -> set[tuple[str, ...]]:
    """Every property path the expression reads."""
    if isinstance(node, Path):
        return {node.segments}
    if isinstance(node, Unary):
        return paths(node.operand)
    if isinstance(node, Binary):
        return paths(node.left) | paths(node.right)
    if isinstance(node, Call):
        return set().union(*(paths(a) for a in node.args)) if node.args else set()
    return set()
