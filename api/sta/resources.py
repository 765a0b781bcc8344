"""Answering SensorThings resource paths: entity sets, entities, navigation, expansion, paging.

Every entity but Observations comes from the registry (the caller's visible devices) and the
catalogue, held in memory and filtered in Python; Observations come from InfluxDB with the time
range and Datastream choice pushed down (api.sta.pushdown) and the rest of `$filter` evaluated
here, fetching more rows until the page is complete (or answering 501 when that needs too many).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode

import orjson

from api.sta import observations as obs
from api.sta.entities import (
    ENTITY_SETS,
    NAVIGATION,
    Entity,
    Stream,
    all_kinds,
    all_metrics,
    datastream,
    feature_of_interest,
    historical_location,
    location,
    observed_property,
    parse_stream_id,
    sensor,
    streams_of,
    thing,
)
from api.sta.errors import EntityNotFound, NotSupported, QuerySyntaxError
from api.sta.evaluate import matches, navigate, sort
from api.sta.instant import Instant, Interval
from api.sta.odata import Path, paths
from api.sta.options import DEFAULT_TOP, Query
from api.sta.pushdown import MAX_NS, MIN_NS, plan
from devices import DEVICE_KINDS, Device
from timeseries import InfluxClient

# Rows one Observations statement may read to fill a page under a filter InfluxDB cannot apply.
SCAN_CAP: Final = 100_000
PREFIX: Final = "/sta/v1.1"


@dataclass(slots=True)
class Context:
    """One request: the caller's visible devices, InfluxDB and the base of our links."""

    devices: dict[str, Device]
    influx: InfluxClient
    base: str  # e.g. https://host/sta/v1.1
    spans: dict[str, Interval | None] = field(default_factory=dict)

    def link(self, entity_set: str, entity_id: str) -> str:
        """The selfLink of an entity."""
        return f"{self.base}/{entity_set}({quote_id(entity_id)})"


def quote_id(entity_id: str) -> str:
    """An id as an OData string literal inside a URL path."""
    return quote("'" + entity_id.replace("'", "''") + "'", safe="':@-._~!$&*+,;=")


# ---------------------------------------------------------------------------------------- lookup


def entity(ctx: Context, entity_set: str, entity_id: str) -> Entity:
    """One entity by id (Observations excepted); EntityNotFound for unknown or invisible ones."""
    device = ctx.devices.get(entity_id)
    if entity_set in ("Things", "Locations", "HistoricalLocations", "FeaturesOfInterest"):
        if device is None:
            raise EntityNotFound(f"no {entity_set[:-1]} {entity_id!r}")
        maker = {
            "Things": thing,
            "Locations": location,
            "HistoricalLocations": historical_location,
            "FeaturesOfInterest": feature_of_interest,
        }[entity_set]
        return maker(device)
    if entity_set == "Sensors":
        if entity_id not in DEVICE_KINDS:
            raise EntityNotFound(f"no Sensor {entity_id!r}")
        return sensor(DEVICE_KINDS[entity_id])
    if entity_set == "ObservedProperties":
        for metric in all_metrics():
            if metric.name == entity_id:
                return observed_property(metric)
        raise EntityNotFound(f"no ObservedProperty {entity_id!r}")
    if entity_set == "Datastreams":
        return datastream(parse_stream_id(entity_id, ctx.devices))
    raise EntityNotFound(f"no entity set {entity_set!r}")


async def observation(ctx: Context, entity_id: str) -> Entity:
    """One Observation by id: `{datastreamId}:{time in ns}`."""
    stream_id, _, ts = entity_id.rpartition(":")
    if not ts.isdigit():
        raise EntityNotFound(f"no Observation {entity_id!r}")
    stream = parse_stream_id(stream_id, ctx.devices)
    fetched = await obs.fetch(ctx.influx, [stream], int(ts), int(ts) + 1, descending=False, rows=1)
    if not fetched.rows:
        raise EntityNotFound(f"no Observation {entity_id!r}")
    return obs.entity_of(fetched.rows[0])


def _visible_streams(ctx: Context) -> list[Stream]:
    return [s for d in ctx.devices.values() for s in streams_of(d)]


def candidates(ctx: Context, entity_set: str, scope: Entity | None) -> list[Entity]:
    """Every entity of a set (not Observations), or those related to `scope`."""
    devices = list(ctx.devices.values())
    if scope is not None and scope.device is not None and entity_set != "Datastreams":
        devices = [scope.device]
    if entity_set == "Things":
        return [thing(d) for d in devices]
    if entity_set == "Locations":
        return [location(d) for d in devices]
    if entity_set == "HistoricalLocations":
        return [historical_location(d) for d in devices]
    if entity_set == "FeaturesOfInterest":
        return [feature_of_interest(d) for d in devices]
    if entity_set == "Sensors":
        return [sensor(k) for k in all_kinds()]
    if entity_set == "ObservedProperties":
        return [observed_property(m) for m in all_metrics()]
    if entity_set == "Datastreams":
        return [datastream(s) for s in _datastream_streams(ctx, scope)]
    raise EntityNotFound(f"no entity set {entity_set!r}")


def _datastream_streams(ctx: Context, scope: Entity | None) -> list[Stream]:
    """The streams of the Datastreams collection, or of those related to `scope`."""
    if scope is None:
        return _visible_streams(ctx)
    if scope.set == "Things" and scope.device is not None:
        return streams_of(scope.device)
    if scope.set == "Sensors":
        return [s for s in _visible_streams(ctx) if s.kind.name == scope.id]
    if scope.set == "ObservedProperties":
        return [s for s in _visible_streams(ctx) if s.metric.name == scope.id]
    return []


def related_one(source: Entity, name: str) -> Entity:
    """A to-one navigation target (Datastream → Thing, Observation → Datastream, ...)."""
    found = navigate(source, name)
    if found is None:
        raise EntityNotFound(f"{source.set} {source.id!r} has no {name}")
    return found


# ---------------------------------------------------------------------------------- collections


async def fill_spans(ctx: Context, entities: list[Entity]) -> None:
    """phenomenonTime and observedArea of Datastreams, from their first and last observation."""
    missing = [e.stream for e in entities if e.stream is not None and e.stream.id not in ctx.spans]
    if missing:
        ctx.spans.update(await obs.time_spans(ctx.influx, missing))
    for e in entities:
        if e.set == "Datastreams" and e.stream is not None:
            span = ctx.spans.get(e.stream.id)
            e.props["phenomenonTime"] = span
            if span is not None and e.device is not None:
                e.props["observedArea"] = location(e.device).props["location"]


def _reads_spans(query: Query) -> bool:
    used = paths(query.filter) if query.filter is not None else set()
    for node, _ in query.orderby:
        used |= paths(node)
    return any(p[0] in ("phenomenonTime", "observedArea", "resultTime") for p in used)


@dataclass(slots=True)
class Page:
    """One page of a collection: its entities, whether more follow, the total if asked.

    A page of Observations holds rows (`rows`); they become entities only when asked for.
    """

    found: list[Entity]
    more: bool
    total: int | None
    rows: list[obs.Row] | None = None

    @property
    def items(self) -> list[Entity]:
        """The entities of the page."""
        if self.rows is not None:
            return [obs.entity_of(r) for r in self.rows]
        return self.found


async def collection(ctx: Context, entity_set: str, scope: Entity | None, query: Query) -> Page:
    """The page of a collection that the query asks for."""
    if entity_set == "Observations":
        return await _observations(ctx, scope, query)
    top = DEFAULT_TOP if query.top is None else query.top
    if entity_set == "Datastreams" and query.filter is None and not query.orderby:
        # Tens of thousands of Datastreams in a large fleet: build entities for the page only.
        streams = sorted(_datastream_streams(ctx, scope), key=lambda s: s.id)
        page = [datastream(s) for s in streams[query.skip : query.skip + top]]
        await fill_spans(ctx, page)
        return Page(page, len(streams) > query.skip + top, len(streams) if query.count else None)
    found = candidates(ctx, entity_set, scope)
    if entity_set == "Datastreams" and _reads_spans(query):
        await fill_spans(ctx, found)
    found = [e for e in found if matches(query.filter, e)]
    found = sort(found, query.orderby)
    page = found[query.skip : query.skip + top]
    if entity_set == "Datastreams":
        await fill_spans(ctx, page)
    return Page(page, len(found) > query.skip + top, len(found) if query.count else None)


def observation_streams(ctx: Context, scope: Entity | None) -> list[Stream]:
    if scope is None:
        return _visible_streams(ctx)
    if scope.set == "Datastreams" and scope.stream is not None:
        return [scope.stream]
    if scope.set == "FeaturesOfInterest" and scope.device is not None:
        return streams_of(scope.device)
    return []


def _descending(query: Query) -> bool:
    if not query.orderby:
        return False
    if len(query.orderby) == 1:
        node, descending = query.orderby[0]
        if isinstance(node, Path) and node.segments == ("phenomenonTime",):
            return descending
    raise NotSupported("Observations can be ordered by phenomenonTime only (asc or desc)")


async def _observations(ctx: Context, scope: Entity | None, query: Query) -> Page:
    streams = observation_streams(ctx, scope)
    descending = _descending(query)
    the_plan = plan(query.filter, exact_time=all(s.window is None for s in streams))
    if the_plan.stream_ids is not None:
        allowed = {s.id for s in streams} if scope is not None else None
        picked = []
        for stream_id in the_plan.stream_ids:
            try:
                stream = parse_stream_id(stream_id, ctx.devices)
            except EntityNotFound:
                continue
            if allowed is None or stream.id in allowed:
                picked.append(stream)
        streams = picked
        # A rollup stream named here needs its window conditions evaluated in Python.
        if any(s.window is not None for s in streams):
            the_plan = plan(query.filter, exact_time=False)
            the_plan.stream_ids = {s.id for s in streams}
    if the_plan.device_ids is not None:
        streams = [s for s in streams if s.device.device_id in the_plan.device_ids]
    top = DEFAULT_TOP if query.top is None else query.top
    start, end = the_plan.start_ns, the_plan.end_ns
    if not streams or start >= end:
        return Page([], False, 0 if query.count else None)
    need = query.skip + top + 1
    kept = await _scan(ctx, streams, start, end, descending, the_plan.residual, need)
    total = None
    if query.count:
        if the_plan.residual is None:
            total = await obs.count(ctx.influx, streams, start, end)
        else:
            total = len(await _scan(ctx, streams, start, end, descending, the_plan.residual, None))
    return Page([], len(kept) > query.skip + top, total, kept[query.skip : query.skip + top])


async def _scan(
    ctx: Context,
    streams: list[Stream],
    start: int,
    end: int,
    descending: bool,
    residual: Any,
    need: int | None,
) -> list[obs.Row]:
    """Observations in order that pass the residual filter: at least `need` (all when None)."""
    rows = SCAN_CAP if need is None else min(max(need, 64), SCAN_CAP)
    while True:
        fetched = await obs.fetch(
            ctx.influx, streams, max(start, MIN_NS), min(end, MAX_NS), descending=descending,
            rows=rows,
        )  # fmt: skip
        kept = obs.complete(fetched, descending)
        if residual is not None:
            kept = [r for r in kept if matches(residual, obs.entity_of(r))]
        if fetched.horizon is None or (need is not None and len(kept) >= need):
            return kept
        if rows >= SCAN_CAP:
            raise NotSupported(
                f"answering needs more than {SCAN_CAP} stored rows per statement; narrow the "
                "time range with phenomenonTime or name a Datastream"
            )
        rows = min(rows * 4, SCAN_CAP)


# ------------------------------------------------------------------------------------ rendering


def plain(value: Any) -> Any:
    """A property value as JSON: times in UTC with Z, intervals as `start/end`."""
    if isinstance(value, Instant | Interval):
        return str(value)
    return value


def next_link(base_path: str, query: Query, skip: int) -> str:
    """The link to the next page: the same options with `$skip` moved on."""
    options = [(k, v) for k, v in query.raw if k != "$skip"]
    options.append(("$skip", str(skip)))
    encoded = urlencode(options, quote_via=quote, safe="$'(),;=/:@")
    return f"{base_path}?{encoded}"


async def render(ctx: Context, item: Entity, query: Query) -> dict[str, Any]:
    """An entity as JSON, with `$select` and `$expand` applied."""
    self_link = ctx.link(item.set, item.id)
    navigation = NAVIGATION[item.set]
    wanted = set(query.select) if query.select is not None else None
    if wanted is not None:
        unknown = wanted - set(item.props) - set(navigation) - {"@iot.id", "@iot.selfLink", "id"}
        if unknown:
            raise QuerySyntaxError(f"{item.set} have no property {sorted(unknown)[0]!r}")
    out: dict[str, Any] = {}
    if wanted is None or "@iot.id" in wanted or "id" in wanted:
        out["@iot.id"] = item.id
    if wanted is None or "@iot.selfLink" in wanted:
        out["@iot.selfLink"] = self_link
    for name, value in item.props.items():
        if wanted is None or name in wanted:
            out[name] = plain(value)
    expanded = {e.name for e in query.expand}
    for name in navigation:
        if (wanted is None or name in wanted) and name not in expanded:
            out[f"{name}@iot.navigationLink"] = f"{self_link}/{name}"
    for expand in query.expand:
        if expand.name not in navigation:
            raise QuerySyntaxError(f"{item.set} have no navigation property {expand.name!r}")
        target, many = navigation[expand.name]
        if many:
            page = await collection(ctx, target, item, expand.query)
            out[expand.name] = [await render(ctx, e, expand.query) for e in page.items]
            if page.total is not None:
                out[f"{expand.name}@iot.count"] = page.total
            if page.more:
                top = DEFAULT_TOP if expand.query.top is None else expand.query.top
                out[f"{expand.name}@iot.nextLink"] = next_link(
                    f"{self_link}/{expand.name}", expand.query, expand.query.skip + top
                )
        else:
            related = related_one(item, expand.name)
            if related.set == "Datastreams":
                await fill_spans(ctx, [related])
            out[expand.name] = await render(ctx, related, expand.query)
    return out


async def render_page(ctx: Context, path: str, page: Page, query: Query) -> dict[str, Any]:
    """A collection's answer: `@iot.count`, `@iot.nextLink` and `value`."""
    out: dict[str, Any] = {}
    if page.total is not None:
        out["@iot.count"] = page.total
    if page.more:
        top = DEFAULT_TOP if query.top is None else query.top
        out["@iot.nextLink"] = next_link(f"{ctx.base}/{path}", query, query.skip + top)
    if page.rows is not None and not query.expand:
        if query.select is None:
            out["value"] = orjson.Fragment(observations_json(ctx, page.rows))
        else:
            out["value"] = observation_values(ctx, page.rows, query)
    else:
        out["value"] = [await render(ctx, e, query) for e in page.items]
    return out


_OBSERVATION_PROPERTIES: Final = frozenset(
    {"@iot.id", "id", "@iot.selfLink", "phenomenonTime", "resultTime", "result", "Datastream",
     "FeatureOfInterest"}
)  # fmt: skip


def observation_values(ctx: Context, rows: list[obs.Row], query: Query) -> list[dict[str, Any]]:
    """Observations as JSON straight from their rows: the same as `render` gives, without
    building an entity for each (a day of raw readings is thousands)."""
    wanted = set(query.select) if query.select is not None else set(_OBSERVATION_PROPERTIES)
    if unknown := wanted - _OBSERVATION_PROPERTIES:
        raise QuerySyntaxError(f"Observations have no property {sorted(unknown)[0]!r}")
    times = obs.phenomenon_times(rows)
    prefix = f"{ctx.base}/Observations("
    heads: dict[str, str] = {}  # stream id -> its quoted link without the closing quote
    out: list[dict[str, Any]] = []
    everything = wanted == _OBSERVATION_PROPERTIES
    for (ts, stream_id, _stream, value), when in zip(rows, times, strict=True):
        head = heads.get(stream_id)
        if head is None:
            head = heads[stream_id] = prefix + quote_id(stream_id)[:-1]
        link = f"{head}:{ts}')"
        if everything:  # the common case, as one literal
            out.append(
                {
                    "@iot.id": f"{stream_id}:{ts}",
                    "@iot.selfLink": link,
                    "phenomenonTime": when,
                    "resultTime": None,
                    "result": value,
                    "Datastream@iot.navigationLink": link + "/Datastream",
                    "FeatureOfInterest@iot.navigationLink": link + "/FeatureOfInterest",
                }
            )
            continue
        item: dict[str, Any] = {}
        if "@iot.id" in wanted or "id" in wanted:
            item["@iot.id"] = f"{stream_id}:{ts}"
        if "@iot.selfLink" in wanted:
            item["@iot.selfLink"] = link
        if "phenomenonTime" in wanted:
            item["phenomenonTime"] = when
        if "resultTime" in wanted:
            item["resultTime"] = None
        if "result" in wanted:
            item["result"] = value
        if "Datastream" in wanted:
            item["Datastream@iot.navigationLink"] = link + "/Datastream"
        if "FeatureOfInterest" in wanted:
            item["FeatureOfInterest@iot.navigationLink"] = link + "/FeatureOfInterest"
        out.append(item)
    return out


def _json_text(text: str) -> str:
    """`text` as the inside of a JSON string (quotes, backslashes and controls escaped)."""
    return orjson.dumps(text).decode()[1:-1]


def observations_json(ctx: Context, rows: list[obs.Row]) -> bytes:
    """The JSON array `observation_values` gives with every property, written as text.

    The same bytes as `orjson.dumps(observation_values(...))`, ~3 times faster for a day of
    readings: the parts of each Observation that are the same for its Datastream are escaped
    once, results are written by orjson in one call, and no dict is made per Observation.
    """
    if not rows:
        return b"[]"
    times = obs.phenomenon_times(rows)
    results = orjson.dumps([r[3] for r in rows]).decode()[1:-1].split(",")
    prefix = f"{ctx.base}/Observations("
    heads: dict[str, tuple[str, str]] = {}  # stream id -> (id, link head), JSON-escaped
    items: list[str] = []
    for (ns, stream_id, _stream, _value), when, result in zip(rows, times, results, strict=True):
        ts = str(ns)  # once, not once per link
        parts = heads.get(stream_id)
        if parts is None:
            link_head = prefix + quote_id(stream_id)[:-1]
            parts = heads[stream_id] = (_json_text(stream_id), _json_text(link_head))
        sid, head = parts
        link = f"{head}:{ts}')"
        items.append(
            f'{{"@iot.id":"{sid}:{ts}","@iot.selfLink":"{link}",'
            f'"phenomenonTime":"{when}","resultTime":null,"result":{result},'
            f'"Datastream@iot.navigationLink":"{link}/Datastream",'
            f'"FeatureOfInterest@iot.navigationLink":"{link}/FeatureOfInterest"}}'
        )
    return f"[{','.join(items)}]".encode()


def is_entity_set(name: str) -> bool:
    """Whether `name` is one of the eight entity sets."""
    return name in ENTITY_SETS
