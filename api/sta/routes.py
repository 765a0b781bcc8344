"""The SensorThings API 1.1 (read) at `/sta/v1.1`: the service document and every resource path.

Resource paths are parsed here (`Things('dev-1')/Datastreams`, `.../name/$value`, `.../$ref`)
rather than declared one route each: SensorThings paths nest to any depth.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request, Response
from isal import igzip

from api.deps import ConfigDep, FleetDep, InfluxDep
from api.open_access import OPEN_DATA_OPERATION
from api.problems import ApiProblem
from api.sta import resources
from api.sta.access import StaAccess
from api.sta.entities import ENTITY_SETS, NAVIGATION, Entity
from api.sta.errors import EntityNotFound, QuerySyntaxError, StaError
from api.sta.options import Query, parse_query

router = APIRouter(prefix=resources.PREFIX, tags=["SensorThings"])

_SPEC: Final = "http://www.opengis.net/spec/iot_sensing/1.1/req"
# Only what is implemented: the read-only core (data model, resource paths, query options).
CONFORMANCE: Final = (
    f"{_SPEC}/datamodel",
    f"{_SPEC}/resource-path/resource-path-to-entities",
    f"{_SPEC}/request-data",
)
_SEGMENT = re.compile(r"(?P<name>[A-Za-z@.$]+)(?:\((?P<id>'(?:[^']|'')*'|[^()']*)\))?")
MAX_PATH_SEGMENTS: Final = 8
FAST_GZIP_BYTES: Final = 64 * 1024  # answers from this size on are compressed here (ISA-L)


def _base(request: Request, public_url: str | None) -> str:
    # SensorThings links are absolute URLs (clients such as frost-sta-client follow them as
    # they are). With a configured public URL they are built from it; without one from the
    # request, which answers `no-store` so no cache keeps a link built from a forged Host.
    root = (public_url or str(request.base_url)).rstrip("/")
    return root + resources.PREFIX


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _compress_large(request: Request, answer: Response) -> Response:
    """A large answer gzipped here, with Intel's ISA-L, for a client that accepts gzip.

    A day of one Datastream every 10 s is 4 MB of JSON: the app's gzip middleware (zlib, level
    5) spent ~50 ms on it, zlib's level 1 ~10-16 ms, ISA-L's level 1 under 2 ms for slightly
    fewer bytes (bench/results/sta.md). The middleware leaves an answer that already has a
    Content-Encoding alone; smaller answers still go through it.
    """
    body = bytes(answer.body)
    if len(body) < FAST_GZIP_BYTES or "gzip" not in request.headers.get("Accept-Encoding", ""):
        return answer
    answer.body = igzip.compress(body, compresslevel=1, mtime=0)
    answer.headers["Content-Length"] = str(len(answer.body))
    answer.headers["Content-Encoding"] = "gzip"
    answer.headers.add_vary_header("Accept-Encoding")
    return answer


def _problem(error: StaError) -> ApiProblem:
    return ApiProblem(error.status, error.title, error.detail)


@router.get("", summary="The SensorThings service document")
async def service_document(request: Request, config: ConfigDep) -> Response:
    """The entity sets and `serverSettings.conformance` (only the classes implemented)."""
    base = _base(request, config.public_url)
    return _json(
        {
            "value": [{"name": name, "url": f"{base}/{name}"} for name in ENTITY_SETS],
            "serverSettings": {"conformance": list(CONFORMANCE)},
        }
    )


def _options(request: Request) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in options:
            raise QuerySyntaxError(f"the query option {name} is given twice")
        options[name] = value
    return options


def _segments(path: str) -> list[tuple[str, str | None]]:
    parts = path.split("/")
    if len(parts) > MAX_PATH_SEGMENTS:
        raise QuerySyntaxError(f"a resource path has at most {MAX_PATH_SEGMENTS} segments")
    out: list[tuple[str, str | None]] = []
    for part in parts:
        match = _SEGMENT.fullmatch(part)
        if match is None:
            raise QuerySyntaxError(f"{part!r} is not a resource path segment")
        raw_id = match.group("id")
        if raw_id is not None and raw_id.startswith("'"):
            raw_id = raw_id[1:-1].replace("''", "'")
        out.append((match.group("name"), raw_id))
    return out


@router.get(
    "/{resource:path}",
    openapi_extra=OPEN_DATA_OPERATION,
    summary="A SensorThings resource: an entity set, an entity, a navigation or a property",
    responses={
        400: {"description": "a malformed path or query option"},
        404: {"description": "no such entity (or one the caller may not see)"},
        501: {"description": "valid SensorThings that this server does not implement"},
    },
)
async def resource(
    resource: str,
    request: Request,
    access: StaAccess,
    fleet: FleetDep,
    influx: InfluxDep,
    config: ConfigDep,
) -> Response:
    """Answer a resource path with the query options of SensorThings 1.1."""
    if resource == "":
        return await service_document(request, config)  # `/sta/v1.1/`, as many clients ask
    try:
        if resource.endswith("/"):
            # NLGov ADR API-48: a path has no trailing slash, and one is not redirected away.
            raise EntityNotFound(f"no resource {resources.PREFIX}/{resource}: drop the final /")
        query = parse_query(_options(request))
        devices = access.readable(await fleet.devices(tenants=access.tenants))
        ctx = resources.Context(
            {d.device_id: d for d in devices}, influx, _base(request, config.public_url)
        )
        answer = await _answer(ctx, resource, query)
        if links := access.licence_links(devices):
            # The public reads open data under its licences: every answer names them.
            answer.headers["Link"] = ", ".join(links)
        return _compress_large(request, answer)
    except StaError as error:
        raise _problem(error) from None


async def _one(ctx: resources.Context, entity_set: str, entity_id: str) -> Entity:
    if entity_set == "Observations":
        return await resources.observation(ctx, entity_id)
    return resources.entity(ctx, entity_set, entity_id)


async def _answer(ctx: resources.Context, path: str, query: Query) -> Response:
    segments = _segments(path)
    name, entity_id = segments[0]
    if name not in ENTITY_SETS:
        raise EntityNotFound(f"no entity set {name!r}; see {resources.PREFIX}")
    current: Entity | None = None
    collection: tuple[str, Entity | None] | None = None
    if entity_id is None:
        collection = (name, None)
    else:
        current = await _one(ctx, name, entity_id)
    for at, (name, entity_id) in enumerate(segments[1:], start=1):
        rest = segments[at + 1 :]
        if collection is not None:
            if name == "$ref" and not rest:
                page = await resources.collection(ctx, collection[0], collection[1], query)
                return _json(
                    {"value": [{"@iot.selfLink": ctx.link(e.set, e.id)} for e in page.items]}
                )
            raise QuerySyntaxError(f"{name!r} cannot follow a collection")
        assert current is not None
        navigation = NAVIGATION[current.set]
        if name in navigation:
            target, many = navigation[name]
            if not many:
                current = resources.related_one(current, name)
                if entity_id is not None and entity_id != current.id:
                    raise EntityNotFound(f"{name} {entity_id!r} is not related")
                continue
            if entity_id is None:
                collection = (target, current)
                continue
            member = await _one(ctx, target, entity_id)
            if not await _related(ctx, current, target, member):
                raise EntityNotFound(f"{target} {entity_id!r} is not related to {current.id!r}")
            current = member
            continue
        if name == "$ref" and not rest:
            return _json({"@iot.selfLink": ctx.link(current.set, current.id)})
        if entity_id is None and (name in current.props or name in ("@iot.id", "id")):
            if current.set == "Datastreams":
                await resources.fill_spans(ctx, [current])
            value = current.id if name in ("@iot.id", "id") else current.props[name]
            if rest == [("$value", None)]:
                return Response(str(resources.plain(value)), media_type="text/plain")
            if rest:
                raise QuerySyntaxError("only $value may follow a property")
            return _json({name: resources.plain(value)})
        raise EntityNotFound(f"{current.set} have no property or navigation {name!r}")
    if collection is not None:
        page = await resources.collection(ctx, collection[0], collection[1], query)
        return _json(await resources.render_page(ctx, path, page, query))
    assert current is not None
    if current.set == "Datastreams":
        await resources.fill_spans(ctx, [current])
    return _json(await resources.render(ctx, current, query))


async def _related(ctx: resources.Context, source: Entity, target: str, member: Entity) -> bool:
    if target == "Observations":
        streams = resources.observation_streams(ctx, source)
        return member.stream is not None and member.stream.id in {s.id for s in streams}
    return member.id in {e.id for e in resources.candidates(ctx, target, source)}
