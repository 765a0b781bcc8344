"""The SensorThings expression parser, evaluator, geometry and push-down, without services."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.sta import odata
from api.sta.entities import Entity, Stream, datastream, location, thing
from api.sta.errors import NotSupported, QuerySyntaxError, QueryTypeError, StaError
from api.sta.evaluate import evaluate, matches, sort
from api.sta.geometry import Geometry, intersects, parse_wkt, point, within
from api.sta.instant import Instant, Interval
from api.sta.odata import Binary, Call, Literal, Node, Path, Unary, parse, unparse
from api.sta.options import parse_query
from api.sta.pushdown import plan
from devices import DEVICE_KINDS, Device

DEVICE = Device("dev-1", "GM0363", "weather", "Weather station Amsterdam", 52.37, 4.89)
STREAM = Stream(DEVICE, DEVICE_KINDS["weather"], DEVICE_KINDS["weather"].metrics[0])


def _observation(value: float, when: datetime) -> Entity:
    return Entity(
        "Observations",
        f"dev-1:temperature:{when.timestamp()}",
        {"phenomenonTime": Instant.of(when), "resultTime": None, "result": value},
        device=DEVICE,
        stream=STREAM,
    )


# ------------------------------------------------------------------------------------- parsing


def test_precedence_follows_odata() -> None:
    assert parse("a eq 1 or b eq 2 and c eq 3") == Binary(
        "or",
        Binary("eq", Path(("a",)), Literal(1)),
        Binary(
            "and", Binary("eq", Path(("b",)), Literal(2)), Binary("eq", Path(("c",)), Literal(3))
        ),
    )
    assert parse("result add 2 mul 3 gt 10") == Binary(
        "gt", Binary("add", Path(("result",)), Binary("mul", Literal(2), Literal(3))), Literal(10)
    )
    assert parse("not a eq 1") == Unary("not", Binary("eq", Path(("a",)), Literal(1)))
    assert parse("a sub b sub c") == Binary(
        "sub", Binary("sub", Path(("a",)), Path(("b",))), Path(("c",))
    )


def test_a_parenthesised_comparison_may_be_compared() -> None:
    # Found by the round-trip property: only unparenthesised chains are malformed.
    assert parse("(a eq b) eq true") == Binary(
        "eq", Binary("eq", Path(("a",)), Path(("b",))), Literal(True)
    )


def test_literals_paths_and_functions() -> None:
    assert parse("name eq 'it''s'") == Binary("eq", Path(("name",)), Literal("it's"))
    assert parse("Datastream/Thing/@iot.id eq 'x'").left == Path(("Datastream", "Thing", "@iot.id"))  # type: ignore[union-attr]
    when = parse("phenomenonTime ge 2026-11-28T12:00:00.5+01:00")
    assert when == Binary(
        "ge",
        Path(("phenomenonTime",)),
        Literal(Instant.of(datetime(2026, 11, 28, 11, 0, 0, 500000, UTC))),
    )
    exact = parse("phenomenonTime eq 2026-01-01T01:00:00.123456789+01:00")
    assert exact == Binary("eq", Path(("phenomenonTime",)), Literal(Instant(1767225600123456789)))
    assert parse("result gt -1.5e2") == Binary("gt", Path(("result",)), Literal(-150.0))
    assert parse("geo.intersects(location, geography'POINT(4.9 52.3)')") == Call(
        "geo.intersects", (Path(("location",)), Literal(point(4.9, 52.3)))
    )
    assert parse("substringof('Amst', name)") == Call(
        "substringof", (Literal("Amst"), Path(("name",)))
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "name eq",
        "eq 1",
        "(a eq 1",
        "a eq 1)",
        "a eq 1 eq 2",
        "name eq 'open",
        "startswith(name)",
        "nosuchfunction(name)",
        "a eq #",
        "geo.intersects(location, geography'POINT(1)')",
        "geo.intersects(location, geography'POLYGON((0 0, 1 0, 0 0))')",
        "(" * 100 + "a" + ")" * 100,
    ],
)
def test_malformed_expressions_are_400(text: str) -> None:
    with pytest.raises(QuerySyntaxError):
        parse(text)


@pytest.mark.parametrize(
    "options",
    [{"$top": "²"}, {"$skip": "٣"}, {"$filter": "result gt ٣"},
     {"$filter": "geo.intersects(location, geography'POINT(٣ 4)')"}],
)  # fmt: skip
def test_digits_are_ascii_digits(options: dict[str, str]) -> None:
    # Found by Hypothesis: "²".isdigit() is true and int("²") raises ValueError.
    with pytest.raises(QuerySyntaxError):
        parse_query(options)


@pytest.mark.parametrize(
    "text", ["now() gt phenomenonTime", "st_crosses(location, geography'POINT(1 2)')"]
)
def test_sensorthings_functions_we_lack_are_501(text: str) -> None:
    with pytest.raises(NotSupported):
        parse(text)


# ---------------------------------------------------------------------------- property tests

_names = st.sampled_from(["name", "result", "id", "@iot.id", "properties", "Thing", "owner"])
_paths = st.lists(_names, min_size=1, max_size=3).map(lambda s: Path(tuple(s)))
_moments = st.integers(min_value=0, max_value=7_000_000_000 * 10**9).map(Instant)
_floats = st.floats(allow_nan=False, allow_infinity=False)
_coords = st.tuples(st.floats(-180, 180, allow_nan=False), st.floats(-90, 90, allow_nan=False))
_points = _coords.map(lambda c: Geometry("Point", ((c,),)))
_polygons = st.lists(_coords, min_size=3, max_size=6).map(
    lambda cs: Geometry("Polygon", ((*cs, cs[0]),))
)
_literals = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    _floats,
    st.text(max_size=12),
    _moments,
    _points,
    _polygons,
).map(Literal)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    ops = sorted(odata.COMPARISONS | odata.ARITHMETIC | {"and", "or"})
    # `-` over a number literal folds into the literal, so the tree never holds that shape.
    negatable = children.filter(lambda n: not isinstance(n, Literal))
    return st.one_of(
        st.builds(Binary, st.sampled_from(ops), children, children),
        st.builds(Unary, st.just("not"), children),
        st.builds(Unary, st.just("-"), negatable),
        st.builds(lambda a, b: Call("concat", (a, b)), children, children),
        st.builds(lambda a: Call("tolower", (a,)), children),
        st.builds(lambda a, b, c: Call("substring", (a, b, c)), children, children, children),
    )


_trees = st.recursive(st.one_of(_literals, _paths), _extend, max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_trees)
def test_printing_a_tree_and_parsing_it_gives_the_same_tree(tree: Node) -> None:
    assert parse(unparse(tree)) == tree


@settings(max_examples=600, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_our_errors(text: str) -> None:
    with contextlib.suppress(StaError):
        parse(text)
    with contextlib.suppress(StaError):
        odata.parse_orderby(text)


_tokens = st.sampled_from(
    ["name", " eq ", " and ", " or ", "not ", "(", ")", "'x'", "1", "2.5", "-", ",", "/",
     "startswith(", "geo.intersects(", "geography'POINT(1 2)'", " add ", "null", "true",
     "2026-01-01T00:00:00Z", "@iot.id", " gt "]
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.lists(_tokens, max_size=20).map("".join))
def test_token_soup_raises_only_our_errors(text: str) -> None:
    try:
        tree = parse(text)
    except StaError:
        return
    assert parse(unparse(tree)) == tree


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["$top", "$skip", "$count", "$select", "$expand", "$orderby", "$filter"]),
        st.text(max_size=30),
    )
)
def test_arbitrary_query_options_raise_only_our_errors(options: dict[str, str]) -> None:
    with contextlib.suppress(StaError):
        parse_query(options)


# ---------------------------------------------------------------------------------- evaluation


def test_comparisons_logic_arithmetic_and_strings() -> None:
    device = thing(DEVICE)
    assert matches(parse("name eq 'Weather station Amsterdam'"), device)
    assert matches(parse("startswith(name, 'Weather') and endswith(name, 'dam')"), device)
    assert matches(parse("substringof('station', name)"), device)
    assert matches(parse("length(name) eq 25 and indexof(name, 'station') eq 8"), device)
    assert matches(parse("tolower(name) eq 'weather station amsterdam'"), device)
    assert matches(parse("toupper(concat(id, '!')) eq 'DEV-1!'"), device)
    assert matches(
        parse("properties/tenant eq 'GM0363' and not (properties/kind ne 'weather')"), device
    )
    assert not matches(parse("properties/owner eq 'x'"), device)  # absent: null, not equal
    assert matches(parse("properties/owner eq null"), device)
    assert not matches(parse("properties/owner gt 'a'"), device)  # null compares false
    obs = _observation(21.5, datetime(2026, 11, 28, 12, tzinfo=UTC))
    assert matches(parse("result mul 2 sub 3 eq 40"), obs)
    assert matches(parse("result mod 2 eq 1.5 and result div 0 eq null"), obs)
    assert matches(
        parse("phenomenonTime ge 2026-11-28T12:00:00Z and hour(phenomenonTime) eq 12"), obs
    )
    assert not matches(parse("phenomenonTime gt 2026-11-28T12:00:00Z"), obs)
    assert matches(parse("Datastream/Thing/@iot.id eq 'dev-1'"), obs)
    assert matches(
        parse("round(result) eq 22 and floor(result) eq 21 and ceiling(result) eq 22"), obs
    )
    assert matches(parse("round(result sub 24) eq -3"), obs)  # halves away from zero
    # Integer division truncates toward zero; mod keeps the dividend's sign.
    assert matches(parse("-7 div 2 eq -3 and -7 mod 2 eq -1 and 7 mod -2 eq 1"), obs)


def test_type_errors_are_400_not_false() -> None:
    device = thing(DEVICE)
    for text in ("name gt 3", "name add 1 eq 2", "length(3) eq 1", "name"):
        with pytest.raises(QueryTypeError):
            matches(parse(text), device)
    with pytest.raises(QueryTypeError):
        matches(parse("nosuch eq 1"), device)


def test_intervals_compare_as_wholly_before_or_after() -> None:
    hour = Interval(
        Instant.of(datetime(2026, 1, 1, 10, tzinfo=UTC)),
        Instant.of(datetime(2026, 1, 1, 11, tzinfo=UTC)),
    )
    entity = Entity("Observations", "x", {"phenomenonTime": hour, "result": 1.0})
    assert matches(parse("phenomenonTime ge 2026-01-01T10:00:00Z"), entity)
    assert not matches(parse("phenomenonTime gt 2026-01-01T10:00:00Z"), entity)
    assert matches(parse("phenomenonTime lt 2026-01-01T11:00:00Z"), entity)
    assert not matches(parse("phenomenonTime lt 2026-01-01T10:30:00Z"), entity)
    assert not matches(parse("phenomenonTime eq 2026-01-01T10:00:00Z"), entity)


def test_geo_functions_on_locations() -> None:
    here = location(DEVICE)
    around = "geography'POLYGON((4 52, 5 52, 5 53, 4 53, 4 52))'"
    elsewhere = "geography'POLYGON((5 52, 6 52, 6 53, 5 53, 5 52))'"
    assert matches(parse(f"geo.intersects(location, {around})"), here)
    assert matches(parse(f"st_within(location, {around})"), here)
    assert matches(parse(f"st_contains({around}, location)"), here)
    assert not matches(parse(f"geo.intersects(location, {elsewhere})"), here)
    assert matches(parse(f"st_disjoint(location, {elsewhere})"), here)
    assert matches(parse("st_equals(location, geography'POINT(4.89 52.37)')"), here)
    assert matches(parse("geo.distance(location, geography'POINT(4.89 52.47)') lt 0.11"), here)
    assert matches(parse(f"geo.intersects(Locations/location, {around})"), thing(DEVICE))
    with pytest.raises(NotSupported):
        matches(parse(f"st_within({around}, {elsewhere})"), here)


def test_geometry_edges_and_holes() -> None:
    square = parse_wkt("POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (4 4, 6 4, 6 6, 4 6, 4 4))")
    assert intersects(point(0, 5), square)  # on the edge
    assert not within(point(0, 5), square)  # OGC: an edge point is not within
    assert not intersects(point(5, 5), square)  # in the hole
    assert within(point(2, 2), square)
    crossing = parse_wkt("POLYGON ((9 9, 20 9, 20 20, 9 20, 9 9))")
    assert intersects(square, crossing)
    inner = parse_wkt("POLYGON ((1 1, 2 1, 2 2, 1 2, 1 1))")
    assert intersects(inner, square)
    assert parse_wkt(square.wkt()) == square


def test_sort_puts_null_first_and_keeps_id_order_for_ties() -> None:
    streams = [datastream(Stream(DEVICE, STREAM.kind, m)) for m in STREAM.kind.metrics]
    ordered = sort(streams, odata.parse_orderby("properties/aggregation desc, name"))
    keys = [(e.props["properties"]["aggregation"], e.props["name"]) for e in ordered]
    expected = sorted(keys, key=lambda k: k[1])
    expected.sort(key=lambda k: k[0], reverse=True)  # stable: names stay in order within ties
    assert keys == expected
    assert len({k[0] for k in keys}) > 1


def test_evaluate_never_runs_python() -> None:
    # Nothing is ever eval'd: a Python expression is just an unknown character.
    with pytest.raises(QuerySyntaxError):
        parse("__import__('os').system('true')")
    assert evaluate(parse("'__import__'"), thing(DEVICE)) == "__import__"


# ----------------------------------------------------------------------------------- push-down


def test_pushdown_takes_top_level_time_and_stream_conditions_only() -> None:
    tree = parse(
        "phenomenonTime ge 2026-01-01T00:00:00Z and phenomenonTime lt 2026-01-02T00:00:00Z "
        "and Datastream/@iot.id eq 'dev-1:temperature' and result gt 3"
    )
    done = plan(tree, exact_time=True)
    assert done.start_ns == 1767225600 * 10**9
    assert done.end_ns == 1767312000 * 10**9
    assert done.stream_ids == {"dev-1:temperature"}
    assert done.residual == parse("result gt 3")
    # Under an OR nothing may be taken.
    either = plan(parse("phenomenonTime ge 2026-01-01T00:00:00Z or result gt 3"), exact_time=True)
    assert (either.start_ns, either.residual) == (
        0,
        parse("phenomenonTime ge 2026-01-01T00:00:00Z or result gt 3"),
    )
    # Rollup windows: the range narrows the query but the condition is still checked in Python.
    loose = plan(parse("phenomenonTime gt 2026-01-01T00:00:00Z"), exact_time=False)
    assert loose.start_ns == 1767225600 * 10**9 + 1
    assert loose.residual == parse("phenomenonTime gt 2026-01-01T00:00:00Z")
