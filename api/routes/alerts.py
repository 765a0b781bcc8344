"""Alert rules, alerts and channels: `/v1/alert-rules` (CRUD), `/v1/alerts` (list, one,
acknowledge) and `/v1/alert-channels` (CRUD, and a webhook's new signing key).

Anyone who may read a tenant reads its rules and alerts; operators and admins of a tenant
change its rules and acknowledge its alerts. A tenant's channels (webhook URLs, e-mail
addresses) are read and changed by its operators and admins only. Another tenant's rule, alert
or channel answers 404, as its devices do. The evaluator (`lantaarn alerts`) picks changes up
at its next round.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic.alias_generators import to_camel

from api import cursor
from api.alert_schemas import (
    AcknowledgeIn,
    AlertOut,
    AlertPage,
    ChannelCreated,
    ChannelIn,
    ChannelList,
    ChannelOut,
    ChannelSettings,
    RuleIn,
    RuleList,
    RuleOut,
    RuleSettings,
)
from api.auth import Operator, Principal, Reader
from api.deps import ConfigDep, RegistryDep
from api.problems import BadRequest
from api.urls import public
from devices import BoundingBox, NotFound
from devices.alert_channels import AlertChannel, channel_problems
from devices.alert_rules import (
    AlertRule,
    AlertState,
    builtin_for,
    rule_problems,
)
from devices.topics import DEVICE_ID_PATTERN, TENANT_PATTERN

router = APIRouter(tags=["alerts"])

_ID_PATTERN = r"^[0-9a-f-]{36}$"
RuleIdPath = Annotated[str, Path(alias="ruleId", pattern=_ID_PATTERN)]
AlertIdPath = Annotated[str, Path(alias="alertId", pattern=_ID_PATTERN)]
ChannelIdPath = Annotated[str, Path(alias="channelId", pattern=_ID_PATTERN)]
TenantQuery = Annotated[str | None, Query(alias="tenant", pattern=f"^{TENANT_PATTERN}$")]


_PROPERTY = {"for_s": "forSeconds", "margin_s": "marginSeconds"}


def _name(attribute: str) -> str:
    return _PROPERTY.get(attribute, to_camel(attribute))


def _bad(problems: list[tuple[str | None, str]]) -> BadRequest:
    return BadRequest(
        [
            {"name": _name(field) if field else "body", "in": "body", "reason": r}
            for field, r in problems
        ]
    )


# Settings that may be cleared with null; the others always have a value.
_NULLABLE = frozenset(
    {"kind", "metric", "statistic", "fire_at", "resolve_at", "active_from", "active_until"}
    | {"bbox", "device_ids"}
)


def _box(changes: dict[str, Any]) -> dict[str, Any]:
    """The request's settings, its bbox text as a BoundingBox (400 when it is not one, or when
    a setting that always has a value is null)."""
    nulls = sorted(k for k, v in changes.items() if v is None and k not in _NULLABLE)
    if nulls:
        raise _bad([(k, f"{_name(k)} cannot be null") for k in nulls])
    text = changes.get("bbox")
    if isinstance(text, str):
        try:
            changes["bbox"] = BoundingBox.parse(text)
        except ValueError as exc:
            raise _bad([("bbox", str(exc))]) from None
    return changes


def _checked(rule: AlertRule) -> AlertRule:
    if found := rule_problems(rule):
        raise _bad([(p.field, p.reason) for p in found])
    return rule


def _visible(principal: Principal, rule: AlertRule) -> AlertRule:
    if not principal.sees(rule.tenant):
        raise NotFound("alert rule", rule.id)
    return rule


async def _rule(registry: RegistryDep, principal: Principal, rule_id: str) -> AlertRule:
    return _visible(principal, await asyncio.to_thread(registry.rule, rule_id))


@router.get("/v1/alert-rules", response_model=RuleList)
async def list_rules(
    registry: RegistryDep, principal: Reader, tenant: TenantQuery = None
) -> RuleList:
    """The rules of the tenants the caller sees (one tenant when named)."""
    tenants = principal.allowed_tenants(tenant)
    rules = await asyncio.to_thread(registry.rules, tenants=tenants)
    return RuleList(items=[RuleOut.of(r) for r in rules])


@router.post(
    "/v1/alert-rules",
    response_model=RuleOut,
    status_code=status.HTTP_201_CREATED,
    responses={400: {"description": "the rule breaks a rule"}},
)
async def create_rule(
    body: RuleIn, request: Request, response: Response, registry: RegistryDep, principal: Operator
) -> RuleOut:
    """A new rule: `{"tenant", "builtin"}` switches a built-in on (other properties override
    it), or the tenant's own rule with its `type` and settings."""
    principal.allowed_tenants(body.tenant)  # 403 outside the caller's tenants
    changes = _box(body.changes())
    if body.builtin is not None:
        template = builtin_for(body.builtin, body.tenant)
        if template is None:
            raise _bad([("builtin", f"no built-in rule {body.builtin!r}")])
        rule = replace(template, **changes)
    else:
        if body.type is None or body.name is None:
            raise _bad([("type", "give a type and a name, or a builtin")])
        changes.pop("name")
        rule = AlertRule(body.tenant, body.name, body.type, **changes)
    made = await asyncio.to_thread(registry.add_rule, _checked(rule))
    response.headers["Location"] = public(request, request.url_for("get_rule", ruleId=made.id))
    return RuleOut.of(made)


@router.get("/v1/alert-rules/{ruleId}", response_model=RuleOut, name="get_rule")
async def get_rule(rule_id: RuleIdPath, registry: RegistryDep, principal: Reader) -> RuleOut:
    """One rule."""
    return RuleOut.of(await _rule(registry, principal, rule_id))


@router.patch("/v1/alert-rules/{ruleId}", response_model=RuleOut)
async def update_rule(
    rule_id: RuleIdPath, body: RuleSettings, registry: RegistryDep, principal: Operator
) -> RuleOut:
    """Change some settings of a rule; the rest stay."""
    rule = await _rule(registry, principal, rule_id)
    changes = _box(body.changes())
    _checked(replace(rule, **changes))
    return RuleOut.of(await asyncio.to_thread(registry.update_rule, rule_id, changes))


@router.delete("/v1/alert-rules/{ruleId}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: RuleIdPath, registry: RegistryDep, principal: Operator) -> Response:
    """Remove a rule; its open alerts are resolved, their history stays."""
    await _rule(registry, principal, rule_id)
    await asyncio.to_thread(registry.delete_rule, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/alerts", response_model=AlertPage)
async def list_alerts(
    request: Request,
    response: Response,
    registry: RegistryDep,
    principal: Reader,
    state: Annotated[list[AlertState] | None, Query(alias="state")] = None,
    tenant: TenantQuery = None,
    device_id: Annotated[
        str | None, Query(alias="deviceId", pattern=f"^{DEVICE_ID_PATTERN}$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_cursor: Annotated[str | None, Query(alias="cursor", max_length=300)] = None,
) -> AlertPage:
    """Alerts of the tenants the caller sees, newest first; `state` may be repeated."""
    before = None
    if page_cursor is not None:
        position = cursor.decode(page_cursor)
        try:
            before = (datetime.fromisoformat(str(position["at"])), str(position["id"]))
        except (KeyError, ValueError):
            raise BadRequest(
                [{"name": "cursor", "in": "query", "reason": "not a cursor this API handed out"}]
            ) from None
    found = await asyncio.to_thread(
        registry.alerts,
        states=None if not state else [s.value for s in state],
        tenants=principal.allowed_tenants(tenant),
        device_id=device_id,
        before=before,
        limit=limit + 1,
    )
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        last = found[-1]
        next_cursor = cursor.encode({"at": last.started_at.isoformat(), "id": last.id})
        response.headers["Link"] = cursor.next_link(request, next_cursor)
    return AlertPage(items=[AlertOut.of(a) for a in found], next=next_cursor)


async def _alert(registry: RegistryDep, principal: Principal, alert_id: str) -> AlertOut:
    alert = await asyncio.to_thread(registry.alert, alert_id)
    if not principal.sees(alert.tenant):
        raise NotFound("alert", alert_id)
    return AlertOut.of(alert, detail=True)


@router.get("/v1/alerts/{alertId}", response_model=AlertOut)
async def get_alert(alert_id: AlertIdPath, registry: RegistryDep, principal: Reader) -> AlertOut:
    """One alert with every change of its state and the state of its notifications."""
    return await _alert(registry, principal, alert_id)


@router.post(
    "/v1/alerts/{alertId}/acknowledge",
    response_model=AlertOut,
    responses={409: {"description": "the alert is not firing"}},
)
async def acknowledge_alert(
    alert_id: AlertIdPath, body: AcknowledgeIn, registry: RegistryDep, principal: Operator
) -> AlertOut:
    """An operator takes a firing alert, with a note; it stays open until it resolves."""
    await _alert(registry, principal, alert_id)
    await asyncio.to_thread(registry.acknowledge, alert_id, body.note, by=principal.key_id)
    return await _alert(registry, principal, alert_id)


def _checked_channel(
    channel: AlertChannel, config: ConfigDep, *, url_changed: bool = True
) -> AlertChannel:
    allow = config.alert_webhooks_internal or not url_changed
    found = channel_problems(channel, allow_internal=allow)
    if found:
        raise _bad([(p.field, p.reason) for p in found])
    return channel


async def _channel(registry: RegistryDep, principal: Principal, channel_id: str) -> AlertChannel:
    channel = await asyncio.to_thread(registry.channel, channel_id)
    if not principal.sees(channel.tenant):
        raise NotFound("alert channel", channel_id)
    return channel


@router.get("/v1/alert-channels", response_model=ChannelList)
async def list_channels(
    registry: RegistryDep, principal: Operator, tenant: TenantQuery = None
) -> ChannelList:
    """The notification channels of the tenants the caller operates (one tenant when named)."""
    tenants = principal.allowed_tenants(tenant)
    channels = await asyncio.to_thread(registry.channels, tenants=tenants)
    return ChannelList(items=[ChannelOut.of(c) for c in channels])


@router.post(
    "/v1/alert-channels",
    response_model=ChannelCreated,
    status_code=status.HTTP_201_CREATED,
    responses={400: {"description": "the channel breaks a rule, e.g. an internal address"}},
)
async def create_channel(
    body: ChannelIn,
    request: Request,
    response: Response,
    registry: RegistryDep,
    config: ConfigDep,
    principal: Operator,
) -> ChannelCreated:
    """A new channel of a tenant: `webhook` (`url`), `email` (`recipients`, `language`) or
    `alertmanager` (`labels`). A webhook's signing key is in this answer and never again."""
    principal.allowed_tenants(body.tenant)  # 403 outside the caller's tenants
    changes = body.changes()
    changes.pop("name", None)
    changes = {k: v for k, v in changes.items() if v is not None}
    channel = _checked_channel(AlertChannel(body.tenant, body.name, body.type, **changes), config)
    made = await asyncio.to_thread(
        registry.add_channel, channel, allow_internal=config.alert_webhooks_internal
    )
    response.headers["Location"] = public(
        request, request.url_for("get_channel", channelId=made.id)
    )
    return ChannelCreated.made(made)


@router.get("/v1/alert-channels/{channelId}", response_model=ChannelOut, name="get_channel")
async def get_channel(
    channel_id: ChannelIdPath, registry: RegistryDep, principal: Operator
) -> ChannelOut:
    """One channel (a webhook's key only by its last characters)."""
    return ChannelOut.of(await _channel(registry, principal, channel_id))


@router.patch("/v1/alert-channels/{channelId}", response_model=ChannelOut)
async def update_channel(
    channel_id: ChannelIdPath,
    body: ChannelSettings,
    registry: RegistryDep,
    config: ConfigDep,
    principal: Operator,
) -> ChannelOut:
    """Change some settings of a channel; the rest stay. Switched off, its queued
    notifications fail."""
    channel = await _channel(registry, principal, channel_id)
    changes = body.changes()
    nulls = sorted(
        k for k in ("name", "language", "enabled") if k in changes and changes[k] is None
    )
    if nulls:
        raise _bad([(k, f"{k} cannot be null") for k in nulls])
    changes = {
        k: (() if v is None and k in ("recipients", "labels") else v) for k, v in changes.items()
    }
    _checked_channel(replace(channel, **changes), config, url_changed="url" in changes)
    changed = await asyncio.to_thread(
        registry.update_channel,
        channel_id,
        changes,
        allow_internal=config.alert_webhooks_internal,
    )
    return ChannelOut.of(changed)


@router.post(
    "/v1/alert-channels/{channelId}/secret",
    response_model=ChannelCreated,
    responses={400: {"description": "the channel is not a webhook"}},
)
async def renew_channel_secret(
    channel_id: ChannelIdPath, registry: RegistryDep, principal: Operator
) -> ChannelCreated:
    """A new signing key for a webhook channel, in this answer only; the old one stops at
    the evaluator's next round."""
    await _channel(registry, principal, channel_id)
    return ChannelCreated.made(await asyncio.to_thread(registry.new_secret, channel_id))


@router.delete("/v1/alert-channels/{channelId}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_channel(
    channel_id: ChannelIdPath, registry: RegistryDep, principal: Operator
) -> Response:
    """Remove a channel; its queued notifications fail, the alerts' history stays."""
    await _channel(registry, principal, channel_id)
    await asyncio.to_thread(registry.delete_channel, channel_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
