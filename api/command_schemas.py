"""What the command routes accept and return: commands, group commands, the catalogue's commands."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, field_serializer

from api.registry_schemas import In
from api.schemas import Out
from devices.command_history import Command, CommandEvent, CommandGroup
from devices.command_messages import utc_text
from devices.topics import DEVICE_ID_PATTERN, TENANT_PATTERN

MAX_DEADLINE_S = 7 * 86400
# Listed ids must fit the API's default body cap (64 KiB); larger groups select by tenant,
# kind or bbox.
MAX_GROUP_IDS = 2000


DeadlineSeconds = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_DEADLINE_S,
        description="seconds the device has to answer; an offline device gets the command "
        "if it reconnects within them, never after",
    ),
]


class CommandIn(In):
    """A command for one device."""

    name: Annotated[str, Field(max_length=64, examples=["set_dim_level"])]
    args: dict[str, Any] = Field(default_factory=dict, examples=[{"level": 40}])
    deadline_seconds: DeadlineSeconds = 300


class SelectorIn(In):
    """Which devices a group command is for: every active device matching all that is given."""

    tenant: Annotated[str | None, Field(pattern=f"^{TENANT_PATTERN}$")] = None
    kind: Annotated[str | None, Field(max_length=32)] = None
    bbox: Annotated[
        str | None,
        Field(max_length=200, description="minLon,minLat,maxLon,maxLat in WGS84 degrees"),
    ] = None
    device_ids: (
        Annotated[
            list[Annotated[str, Field(pattern=f"^{DEVICE_ID_PATTERN}$")]],
            Field(min_length=1, max_length=MAX_GROUP_IDS),
        ]
        | None
    ) = None


class GroupCommandIn(CommandIn):
    """A command for every device a selector picks."""

    selector: SelectorIn


class EventOut(Out):
    """A change of a command's state."""

    state: str
    at: datetime
    detail: str | None = None

    @field_serializer("at")
    def _utc(self, value: datetime) -> str:
        return utc_text(value)

    @classmethod
    def of(cls, event: CommandEvent) -> EventOut:
        """The API view of an event."""
        return cls(state=event.state, at=event.at, detail=event.detail)


class CommandOut(Out):
    """A command, its current state and who gave it; `events` on a single command only."""

    id: str
    group_id: str | None
    tenant: str
    device_id: str
    name: str
    args: dict[str, Any]
    state: str = Field(description="created, sent, done, refused, failed or expired")
    detail: str | None
    issued_by: str | None = Field(description="the API key's id")
    issued_role: str
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    events: list[EventOut] | None = None

    @field_serializer("created_at", "expires_at", "sent_at", "finished_at")
    def _utc(self, value: datetime | None) -> str | None:
        return None if value is None else utc_text(value)

    @classmethod
    def of(cls, command: Command, *, events: bool = False) -> CommandOut:
        """The API view of a stored command."""
        return cls(
            id=command.id,
            group_id=command.group_id,
            tenant=command.tenant,
            device_id=command.device_id,
            name=command.name,
            args=command.args,
            state=command.state.value,
            detail=command.detail,
            issued_by=command.issuer.key_id,
            issued_role=command.issuer.role,
            created_at=command.created_at,
            expires_at=command.expires_at,
            sent_at=command.sent_at,
            finished_at=command.finished_at,
            events=[EventOut.of(e) for e in command.events] if events else None,
        )


class CommandPage(Out):
    """A page of commands, newest first; `next` is the cursor of the following page."""

    items: list[CommandOut]
    next: str | None = None


class GroupOut(Out):
    """A group command and its progress: how many of its commands are in each state."""

    id: str
    tenants: list[str]
    selector: dict[str, Any]
    name: str
    args: dict[str, Any]
    issued_by: str | None
    issued_role: str
    created_at: datetime
    expires_at: datetime
    devices: int
    progress: dict[str, int]
    finished: bool = Field(description="every command is done, refused, failed or expired")

    @field_serializer("created_at", "expires_at")
    def _utc(self, value: datetime) -> str:
        return utc_text(value)

    @classmethod
    def of(cls, group: CommandGroup) -> GroupOut:
        """The API view of a group command."""
        open_count = group.progress.get("created", 0) + group.progress.get("sent", 0)
        return cls(
            id=group.id,
            tenants=list(group.tenants),
            selector=group.selector,
            name=group.name,
            args=group.args,
            issued_by=group.issuer.key_id,
            issued_role=group.issuer.role,
            created_at=group.created_at,
            expires_at=group.expires_at,
            devices=group.device_count,
            progress=group.progress,
            finished=open_count == 0,
        )
