"""Commands to devices: give them (one device or a group), follow them, export the audit trail.

Operators and admins of a device's tenant give commands; anyone who may read the tenant reads
its history; another tenant's commands answer 404, as its devices do. The routes only store a
command (state created): the command service publishes it (see broker/command_service.py),
woken at once when it runs in this process, else at its next poll.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from api import cursor
from api.auth import Operator, Principal, Reader, ensure_visible
from api.command_schemas import (
    CommandIn,
    CommandOut,
    CommandPage,
    GroupCommandIn,
    GroupOut,
)
from api.deps import RegistryDep
from api.problems import BadRequest
from api.routes.devices import DeviceIdPath, registry_call
from api.timefmt import Moment
from api.urls import public
from broker.command_service import CommandService
from devices import BoundingBox, Device, NotFound
from devices.command_history import (
    Command,
    CommandGroup,
    CommandState,
    CommandStore,
    HistoryPage,
    Issuer,
    NewCommand,
)
from devices.commands_catalogue import command_problems
from devices.topics import TENANT_PATTERN

router = APIRouter(tags=["commands"])

CSV = "text/csv"
_ID_PATTERN = r"^[0-9a-f-]{36}$"
CommandIdPath = Annotated[str, Path(alias="commandId", pattern=_ID_PATTERN)]
GroupIdPath = Annotated[str, Path(alias="groupId", pattern=_ID_PATTERN)]
_CSV_COLUMNS = (
    "id",
    "groupId",
    "tenant",
    "deviceId",
    "name",
    "args",
    "state",
    "detail",
    "issuedBy",
    "issuedRole",
    "createdAt",
    "expiresAt",
    "sentAt",
    "finishedAt",
)


def _store(request: Request) -> CommandStore:
    store: CommandStore = request.app.state.commands
    return store


def _wake(request: Request) -> None:
    service: CommandService | None = getattr(request.app.state, "command_service", None)
    if service is not None:
        service.wake()


def _issuer(principal: Principal) -> Issuer:
    return Issuer(principal.key_id, principal.role.value)


def _fit(devices: Sequence[Device], name: str, args: dict[str, Any]) -> None:
    """400 naming every bad field when the command does not fit a device's kind."""
    found: list[dict[str, str]] = []
    seen: set[tuple[str | None, str]] = set()
    for kind in sorted({d.kind for d in devices}):
        for problem in command_problems(kind, name, args):
            key = (problem.field, problem.reason)
            if key not in seen:
                seen.add(key)
                where = problem.field or "body"
                found.append({"name": where, "in": "body", "reason": str(problem)})
    if found:
        raise BadRequest(found)


def _visible_command(principal: Principal, command: Command) -> Command:
    if not principal.sees(command.tenant):
        raise NotFound("command", command.id)
    return command


def _visible_group(principal: Principal, group: CommandGroup) -> CommandGroup:
    if not all(principal.sees(t) for t in group.tenants):
        raise NotFound("command group", group.id)
    return group


@router.post(
    "/v1/devices/{deviceId}/commands",
    response_model=CommandOut,
    status_code=status.HTTP_201_CREATED,
    responses={400: {"description": "the command does not fit"}, 404: {"description": "no device"}},
)
async def command_device(
    device_id: DeviceIdPath,
    body: CommandIn,
    request: Request,
    response: Response,
    registry: RegistryDep,
    principal: Operator,
) -> CommandOut:
    """Give one device a command; it is stored and published, its state follows."""
    device: Device = await registry_call(registry.device, device_id)
    ensure_visible(principal, device_id, device.tenant)
    if device.retired:
        raise BadRequest(
            [{"name": "deviceId", "in": "path", "reason": f"device {device_id!r} is retired"}]
        )
    _fit([device], body.name, body.args)
    now = datetime.now(UTC)
    new = NewCommand(
        device.tenant,
        device_id,
        body.name,
        body.args,
        now + timedelta(seconds=body.deadline_seconds),
    )
    (made,), _ = await asyncio.to_thread(_store(request).create, [new], _issuer(principal), now=now)
    _wake(request)
    response.headers["Location"] = public(
        request, request.url_for("get_command", commandId=made.id)
    )
    return CommandOut.of(made, events=True)


async def _select(
    registry: RegistryDep, principal: Principal, body: GroupCommandIn
) -> list[Device]:
    selector = body.selector
    box = None
    if selector.bbox is not None:
        try:
            box = BoundingBox.parse(selector.bbox)
        except ValueError as exc:
            bad = {"name": "selector.bbox", "in": "body", "reason": str(exc)}
            raise BadRequest([bad]) from None
    if selector == type(selector)():
        raise BadRequest(
            [
                {
                    "name": "selector",
                    "in": "body",
                    "reason": "name a tenant, kind, bbox or deviceIds",
                }
            ]
        )
    devices: list[Device] = await registry_call(
        registry.devices,
        tenants=principal.allowed_tenants(selector.tenant),
        kind=selector.kind,
        bbox=box,
        include_retired=False,
    )
    if selector.device_ids is not None:
        wanted = set(selector.device_ids)
        devices = [d for d in devices if d.device_id in wanted]
        missing = sorted(wanted - {d.device_id for d in devices})
        if missing:
            shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
            raise BadRequest(
                [
                    {
                        "name": "selector.deviceIds",
                        "in": "body",
                        "reason": f"{len(missing)} device(s) not found, retired or outside "
                        f"the rest of the selector: {shown}",
                    }
                ]
            )
    if not devices:
        raise BadRequest([{"name": "selector", "in": "body", "reason": "selects no device"}])
    return devices


@router.post(
    "/v1/commands",
    response_model=GroupOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={400: {"description": "the command does not fit, or the selector is bad"}},
)
async def command_group(
    body: GroupCommandIn,
    request: Request,
    response: Response,
    registry: RegistryDep,
    principal: Operator,
) -> GroupOut:
    """Give every device a selector picks one command each; follow the group's progress."""
    devices = await _select(registry, principal, body)
    _fit(devices, body.name, body.args)
    now = datetime.now(UTC)
    deadline = now + timedelta(seconds=body.deadline_seconds)
    new = [NewCommand(d.tenant, d.device_id, body.name, body.args, deadline) for d in devices]
    selector = body.selector.model_dump(by_alias=True, exclude_none=True)
    _, group = await asyncio.to_thread(
        _store(request).create, new, _issuer(principal), group_selector=selector, now=now
    )
    assert group is not None
    _wake(request)
    response.headers["Location"] = public(
        request, request.url_for("get_command_group", groupId=group.id)
    )
    return GroupOut.of(group)


@router.get("/v1/command-groups/{groupId}", response_model=GroupOut)
async def get_command_group(group_id: GroupIdPath, request: Request, principal: Reader) -> GroupOut:
    """A group command and how many of its commands are in each state."""
    group = await asyncio.to_thread(_store(request).group, group_id)
    return GroupOut.of(_visible_group(principal, group))


@router.get("/v1/commands/{commandId}", response_model=CommandOut)
async def get_command(command_id: CommandIdPath, request: Request, principal: Reader) -> CommandOut:
    """One command with each change of its state."""
    command = await asyncio.to_thread(_store(request).command, command_id)
    return CommandOut.of(_visible_command(principal, command), events=True)


def _csv(items: Sequence[Command]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    for c in items:
        view = CommandOut.of(c).model_dump(by_alias=True)
        view["args"] = json.dumps(c.args, sort_keys=True)
        writer.writerow(["" if view[k] is None else view[k] for k in _CSV_COLUMNS])
    return out.getvalue()


async def _history_answer(
    request: Request,
    response: Response,
    store: CommandStore,
    page_cursor: str | None,
    limit: int,
    **filters: Any,
) -> Response | CommandPage:
    after = None
    if page_cursor is not None:
        state = cursor.decode(page_cursor)
        try:
            after = (datetime.fromisoformat(str(state["at"])), str(state["id"]))
        except (KeyError, ValueError):
            raise BadRequest(
                [{"name": "cursor", "in": "query", "reason": "not a cursor this API handed out"}]
            ) from None
    page: HistoryPage = await asyncio.to_thread(store.history, after=after, limit=limit, **filters)
    next_cursor = None
    if page.after is not None:
        at, last = page.after
        next_cursor = cursor.encode({"at": at.isoformat(), "id": last})
        response.headers["Link"] = cursor.next_link(request, next_cursor)
    if CSV in request.headers.get("accept", ""):
        return Response(
            _csv(page.items), media_type=f"{CSV}; charset=utf-8", headers=dict(response.headers)
        )
    return CommandPage(items=[CommandOut.of(c) for c in page.items], next=next_cursor)


StateQuery = Annotated[
    CommandState | None, Query(alias="state", description="only commands in this state")
]
LimitQuery = Annotated[int, Query(ge=1, le=10_000)]
CursorQuery = Annotated[str | None, Query(alias="cursor", max_length=300)]
_HISTORY_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {CSV: {}}}}


@router.get(
    "/v1/devices/{deviceId}/commands", response_model=CommandPage, responses=_HISTORY_RESPONSES
)
async def device_commands(
    device_id: DeviceIdPath,
    request: Request,
    response: Response,
    registry: RegistryDep,
    principal: Reader,
    command_state: StateQuery = None,
    limit: LimitQuery = 100,
    page_cursor: CursorQuery = None,
) -> Response | CommandPage:
    """The device's commands, newest first; JSON or CSV by `Accept`."""
    device: Device = await registry_call(registry.device, device_id)
    ensure_visible(principal, device_id, device.tenant)
    return await _history_answer(
        request,
        response,
        _store(request),
        page_cursor,
        limit,
        device_id=device_id,
        state=None if command_state is None else command_state.value,
    )


@router.get("/v1/commands", response_model=CommandPage, responses=_HISTORY_RESPONSES)
async def command_history(
    request: Request,
    response: Response,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    device_id: Annotated[str | None, Query(alias="deviceId", max_length=63)] = None,
    group_id: Annotated[str | None, Query(alias="groupId", pattern=_ID_PATTERN)] = None,
    name: Annotated[str | None, Query(max_length=64)] = None,
    command_state: StateQuery = None,
    start: Annotated[Moment | None, Query(description="created at or after (RFC 3339)")] = None,
    end: Annotated[Moment | None, Query(description="created before (RFC 3339)")] = None,
    limit: LimitQuery = 100,
    page_cursor: CursorQuery = None,
) -> Response | CommandPage:
    """The audit trail: commands newest first, filtered; JSON or CSV (`Accept: text/csv`)."""
    return await _history_answer(
        request,
        response,
        _store(request),
        page_cursor,
        limit,
        tenants=principal.allowed_tenants(tenant),
        device_id=device_id,
        group_id=group_id,
        name=name,
        state=None if command_state is None else command_state.value,
        since=start,
        until=end,
    )
