"""Changes pushed to open dashboards: `/v1/events`, server-sent events (text/event-stream).

Events of one stream, only of the caller's tenants (an API key's, or the dashboard session's):

- `summary`: the `/v1/summary` JSON, first on connecting and then whenever it changed (looked at
  every `TICK_S` seconds; the summary itself is shared by every stream of the same tenants);
  sent after the `devices` events waiting, its `id` says the stream has sent every change up
  to there (a reconnecting browser carries on from it);
- `devices`: `{"devices": [...]}`, the devices whose state changed since the last such event,
  each as only what changes of an item of `/v1/latest`: `deviceId`, `status`, `ts` (its newest
  reading's time) and `metrics` (a dashboard merges it into the item it holds); its `id` lets a
  reconnecting browser (`Last-Event-ID`) carry on where it left off, and a client opening a
  stream of other devices (`?after=`) too. Of every device of the tenants, or, when the stream
  names devices (`?devices=a,b,c`, as the dashboard names those of the page it shows), of
  those only: a big city's tenant changes about a thousand devices a second, a page shows a
  hundred, and a browser need not be sent and parse the rest;
- `resync`: `{}`, the stream fell behind (its client read too slowly) and `devices` events were
  dropped: read `/v1/latest` again; a fresh `summary` follows;
- a comment line (`: keep-alive`) when nothing was sent for `HEARTBEAT_S` seconds.

One change feed per tenant set (`ChangeFeed`): it reads the set's changes once per tick and
serialises each `devices` event once, and every open stream of that set that names no devices
is handed the same bytes; a stream that names devices gets an event of its own, made only when
one of them changed (only the rows of named devices are made into events).
A stream holds at most `QUEUED_EVENTS` events (references to the shared bytes) for a slow client;
beyond that its queue is emptied and it is told to `resync`, so a client that does not read
never grows the API's memory.

Which changes, and when: the device-state store stamps each write's rows with a stamp that
increases in the order the writers commit (devices/registry/device_state.py: the writers take
it one after another from a locked row). A feed reads the changes after its position in
(stamp, device id) order as soon as they are committed, and moves its position to the last one
read: a write that commits later always has a later stamp, so none is skipped, and a device
rewritten every half second is in the next event with its newest state (each write moves its
row forward, past the feed's position, never out of its reach). A `devices` event's id is the
position of the last change read (`<stamp>.<device id>`): a reconnecting browser gets exactly
what was committed after it. A new stream starts after the last change committed when it opens.

Statuses: each feed keeps a status board of its tenant set (api/status_board.py), read when
the feed starts (before its first stream's first summary) and kept current from the rows the
feed reads. It decides each change's status (and leaves out retired devices) without a join,
and the set's `summary` counts devices by status from it rather than by an aggregate query
over all of them.

What a change costs the API (bench/results/latest_scale.md): one entry of a change index, read
in (stamp, id) order from the index alone (`DeviceStates.state_changes`: the index holds the
state but its values, migration g0011; plain driver rows), and a few array cells of the board,
filled column by column. Only a change some stream is sent costs more: its row read by id with
its values (`state_records`) and one JSON fragment written from it (the stored metrics embedded
as stored, the time's text cached per second), no dict per device. A feed one of whose streams
names no devices reads every changed row with its values in one range read instead
(`changed_records`): it sends them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Annotated, ClassVar, Final

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import Reader
from api.problems import BadRequest
from api.routes.summary import summaries
from api.status_board import Shown, StatusBoard
from api.timefmt import format_ns, now_ns
from devices import Registry
from devices.registry import Position
from devices.topics import DEVICE_ID_PATTERN, DEVICE_ID_RE, TENANT_PATTERN

router = APIRouter(prefix="/v1/events", tags=["events"])
log = logging.getLogger(__name__)

TICK_S: Final = 2.0
FOLLOW_S: Final = 30.0  # how often a feed's board follows the registry's changed devices
HEARTBEAT_S: Final = 15.0
BATCH: Final = 2_000  # devices per `devices` event
BATCHES_PER_TICK: Final = 5
NAMED_MAX: Final = 1_000  # devices a stream may name (a dashboard's largest page)
QUEUED_EVENTS: Final = 8  # events a stream may have waiting before it is told to resync
# An event's id: a position, `<stamp>.<device id>`; the device id is empty in a summary's id
# sent before any change was read (the position a stream started at).
_EVENT_ID = re.compile(rf"(\d{{1,19}})\.((?:{DEVICE_ID_PATTERN})?)")
_RESYNC: Final = b"event: resync\ndata: {}\n\n"

TenantKey = tuple[str, ...] | None


def _start(event_id: str, name: str, where: str) -> Position:
    """Where a stream starts: after the last event a client saw (`name`, in `where`)."""
    found = _EVENT_ID.fullmatch(event_id)
    if found is None:
        raise BadRequest([{"name": name, "in": where, "reason": "not an event id of ours"}])
    return int(found[1]), found[2]


def _named(devices: str | None) -> frozenset[str] | None:
    """The devices a stream names (None: it names none, and is sent every device's changes)."""
    if devices is None:
        return None
    ids = frozenset(devices.split(",")) if devices else frozenset()
    if len(ids) > NAMED_MAX or not all(DEVICE_ID_RE.fullmatch(d) for d in ids):
        reason = f"at most {NAMED_MAX} device ids, comma separated"
        raise BadRequest([{"name": "devices", "in": "query", "reason": reason}])
    return ids


def _event_id(position: Position) -> str:
    """An event's id: the position a stream has got to (`_start` reads it back)."""
    return f"{position[0]}.{position[1]}"


def _event(name: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + data + b"\n\n"


def _devices_event(shown: list[Shown], after: Position) -> bytes:
    """A `devices` event of these changes, whose id is `after` (the position read up to).

    Written as text, a fragment per device: ids are of DEVICE_ID_PATTERN (quoted as they are;
    any other is escaped by orjson), statuses are three words, and `metrics` is the JSON object
    the store keeps (written by orjson in DeviceStates.record_states), embedded as it is.
    """
    safe_id = DEVICE_ID_RE.fullmatch
    parts = []
    for device_id, status, last_ns, metrics in shown:
        quoted = f'"{device_id}"' if safe_id(device_id) else orjson.dumps(device_id).decode()
        ts = "null" if last_ns is None else f'"{format_ns(last_ns)}"'
        parts.append(f'{{"deviceId":{quoted},"status":"{status}","ts":{ts},"metrics":{metrics}}}')
    body = ('{"devices":[' + ",".join(parts) + "]}").encode()
    return _event("devices", body, _event_id(after))


def _hand_out(shown: list[Shown], after: Position, listeners: Sequence[Listener]) -> None:
    """Offer each listener its `devices` event of these changes (read up to `after`): the same
    bytes to every listener of all devices, and to those naming devices an event of theirs
    only (none when none of theirs changed); each has been handed everything up to `after`."""
    everything: bytes | None = None
    latest: dict[str, Shown] | None = None
    for listener in listeners:
        listener.position = after
        if not shown:
            continue
        if listener.devices is None:
            if everything is None:
                everything = _devices_event(shown, after)
            listener.offer(everything)
            continue
        if latest is None:  # by id, for the listeners' few devices
            latest = {change[0]: change for change in shown}
        mine = [latest[d] for d in listener.devices if d in latest]
        if mine:
            listener.offer(_devices_event(mine, after))


class Listener:
    """One open stream's place in a feed: the events waiting for it, at most QUEUED_EVENTS;
    `devices`: the only devices whose changes it is sent (None: every device of the set);
    `position`: how far the feed has handed it every change it is to get (the events of those
    are in `waiting` or were sent)."""

    def __init__(self, devices: frozenset[str] | None = None, position: Position = (0, "")) -> None:
        self.devices = devices
        self.position = position
        self.waiting: deque[bytes] = deque()
        self.arrived = asyncio.Event()
        self.behind = False  # events were dropped: the stream must tell its client to resync
        self.dropped = 0  # events dropped so far (for tests)

    def offer(self, event: bytes) -> None:
        """Queue the event, or drop everything waiting and mark the stream behind."""
        if self.behind:
            self.dropped += 1
        elif len(self.waiting) >= QUEUED_EVENTS:
            self.dropped += len(self.waiting) + 1
            self.waiting.clear()
            self.behind = True
        else:
            self.waiting.append(event)
        self.arrived.set()


class ChangeFeed:
    """The changes of one tenant set (None: every tenant), read once per tick by one task and
    handed to each listener. The task runs while the feed has listeners."""

    started: ClassVar[int] = 0  # feeds made in this process (for tests and benchmarks)
    running: ClassVar[int] = 0  # feeds of this process whose task runs (for tests)

    def __init__(self, registry: Registry, tenants: TenantKey, after: Position) -> None:
        ChangeFeed.started += 1
        self.registry = registry
        self.tenants = tenants
        self.after = after
        self.board = StatusBoard(registry, tenants)
        self.followed = 0.0  # when the board last followed the registry (monotonic s)
        self.listeners: set[Listener] = set()
        self.reads = 0  # registry reads done (for tests and benchmarks)
        self.task: asyncio.Task[None] | None = None

    async def _read(
        self,
        after: Position,
        until: Position | None,
        wanted: Callable[[], frozenset[str] | None],
    ) -> tuple[list[Shown], int, Position]:
        """The changes after `after` (up to `until`), at most BATCH rows, put on the board; those
        of the devices `wanted()` names (None: all) as shown, with their values; how many rows
        were read (a full batch: there may be more); and the position of the last one (`after`
        when none).

        `wanted()` is asked again after each read: a stream that joined meanwhile (it has been
        sent every change up to the position this batch started from) gets its devices' changes
        of this batch too."""
        if wanted() is None:  # a stream of every change: the values in the same read
            return await self._read_all(after, until)
        rows = await asyncio.to_thread(
            self.registry.state_changes, self.tenants, after, until, BATCH
        )
        self.reads += 1
        last = (rows[-1][4], rows[-1][0]) if rows else after
        asked = wanted()
        noted = self.board.note(rows, asked)
        if noted.unknown:  # devices registered since the board last followed the registry
            await self.board.follow()
            # The batch again, in its order (applying a row twice changes nothing). Still
            # unknown: a state row without a device (none is written so); as a join to the
            # devices would, it is left out.
            asked = wanted()
            noted = self.board.note(rows, asked)
        shown: list[Shown] = []
        show, done = noted.show, set[str]()
        while True:
            if show:
                records = await asyncio.to_thread(self.registry.state_records, show)
                shown.extend(self.board.shown(records, now_ns()))
                done.update(show)
            later = wanted()
            if asked is None or (later is not None and later <= asked):
                return shown, len(rows), last
            asked = later  # a stream joined during a read: its devices of this batch too
            show = [d for d in self.board.note(rows, asked).show if d not in done]

    async def _read_all(
        self, after: Position, until: Position | None
    ) -> tuple[list[Shown], int, Position]:
        """As `_read`, every change shown: the rows read with their values at once."""
        records = await asyncio.to_thread(
            self.registry.changed_records, self.tenants, after, until, BATCH
        )
        self.reads += 1
        last = (records[-1][5], records[-1][0]) if records else after
        if not self.board.knows(r[0] for r in records):
            await self.board.follow()  # devices registered since it last followed the registry
        return self.board.shown(records, now_ns()), len(records), last

    def _wanted(self) -> frozenset[str] | None:
        """The devices whose changes the listeners are sent (None: all, when one wants all)."""
        named: set[str] = set()
        for listener in self.listeners:
            if listener.devices is None:
                return None
            named.update(listener.devices)
        return frozenset(named)

    async def tick(self) -> None:
        """Read what changed since the last tick (up to BATCHES_PER_TICK events) and hand it out."""
        if time.monotonic() - self.followed >= FOLLOW_S or not self.board.ready:
            # Devices retired or given another interval reach the board within FOLLOW_S;
            # devices registered since, at once (their rows are not on the board: _read).
            await self.board.follow()
            self.followed = time.monotonic()
        for _ in range(BATCHES_PER_TICK):
            # Who wants what is looked at once the rows are in (a stream may have joined
            # meanwhile), and nothing is awaited from there until every listener has its event.
            shown, read, self.after = await self._read(self.after, None, self._wanted)
            _hand_out(shown, self.after, list(self.listeners))
            if read < BATCH:
                return

    async def run(self, feeds: dict[TenantKey, ChangeFeed]) -> None:
        """Tick until the last listener has gone, then leave `feeds`."""
        ChangeFeed.running += 1
        try:
            while self.listeners:
                try:
                    await self.tick()
                except Exception as exc:  # noqa: BLE001 - the registry away: wait, not die
                    log.warning("change feed: could not read the device state: %s", exc)
                await asyncio.sleep(TICK_S)
        finally:
            ChangeFeed.running -= 1
            if feeds.get(self.tenants) is self:
                del feeds[self.tenants]

    async def catch_up(
        self, after: Position, devices: frozenset[str] | None = None
    ) -> AsyncIterator[bytes]:
        """`devices` events from `after` to where the feed is (a reconnecting browser's gap),
        of the `devices` given only (None: all); `resync` instead when that is more than
        BATCHES_PER_TICK events. Ends at the feed's position: subscribe without awaiting
        anything in between."""
        await self.board.load()
        for _ in range(BATCHES_PER_TICK):
            target = self.after
            if after >= target:
                return
            shown, read, after = await self._read(after, target, lambda: devices)
            if shown:
                yield _devices_event(shown, after)
            complete = read < BATCH
            if complete:
                after = max(after, target)
        if after < self.after:
            yield _RESYNC


def _feeds(request: Request) -> dict[TenantKey, ChangeFeed]:
    state = request.app.state
    feeds: dict[TenantKey, ChangeFeed] | None = getattr(state, "change_feeds", None)
    if feeds is None:
        feeds = state.change_feeds = {}
    return feeds


async def _stream(
    request: Request,
    registry: Registry,
    tenants: Sequence[str] | None,
    after: Position | None,
    devices: frozenset[str] | None,
) -> AsyncGenerator[bytes, None]:
    cache = summaries(request)
    key: TenantKey = None if tenants is None else tuple(sorted(set(tenants)))
    feeds = _feeds(request)
    yield b"retry: 5000\n\n"
    feed = feeds.get(key)
    start = after or (0, "")  # where a new feed starts (unused when one is running)
    if feed is None or feed.task is None or feed.task.done():
        # From the client's last event, but never from beyond what is committed: an id made up
        # ahead would hold back every stream of the set that joins this feed.
        committed = await asyncio.to_thread(registry.change_position)
        start = committed if after is None else min(after, committed)
        feed = feeds.get(key)  # another stream of the set may have started one meanwhile
    if feed is None or feed.task is None or feed.task.done():
        feed = feeds[key] = ChangeFeed(registry, key, start)
    elif after is not None:
        async for event in feed.catch_up(after, devices):
            yield event
    listener = Listener(devices, feed.after)
    feed.listeners.add(listener)  # no await since catch_up ended: nothing slipped past
    if feed.task is None or feed.task.done():
        # New, or its last listener left while this one caught up: (re)start it from where
        # it got to.
        feeds.setdefault(key, feed)
        feed.task = asyncio.create_task(feed.run(feeds), name=f"change-feed {key}")
    shown: str | None = None
    quiet_since = time.monotonic()
    try:
        try:  # the first summary from the board: read it now rather than count in SQL too
            await feed.board.load()
        except Exception as exc:  # noqa: BLE001 - the registry away: counted in SQL later
            log.warning("event stream: could not read the devices' statuses: %s", exc)
        while True:
            sent = False
            if listener.behind:
                listener.behind = False
                shown = None  # a fresh summary after the resync
                yield _RESYNC
                sent = True
            summary = None
            try:
                summary = await cache.get(tenants, feed.board)
            except Exception as exc:  # noqa: BLE001 - the registry away: the stream waits
                log.warning("event stream: could not compute the summary: %s", exc)
            while listener.waiting:
                yield listener.waiting.popleft()
                sent = True
            if summary is not None and summary.etag != shown and not listener.behind:
                # Nothing awaited since the queue was found empty: the stream has sent every
                # change up to the listener's position, the summary's id. A stream naming
                # devices that seldom change thus still has a recent id to reconnect from.
                # (Fallen behind while the queue was sent: events were dropped, so the
                # position is not the stream's; the resync goes first, then the summary.)
                shown = summary.etag
                yield _event("summary", summary.body, _event_id(listener.position))
                sent = True
            if sent:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= HEARTBEAT_S:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            if await request.is_disconnected():
                return
            listener.arrived.clear()
            if not listener.waiting and not listener.behind:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK_S):
                        await listener.arrived.wait()
    finally:
        feed.listeners.discard(listener)


@router.get(
    "",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "server-sent events: `summary` (the /v1/summary JSON), `devices` "
            '(`{"devices": [{deviceId, status, ts, metrics}]}`: what changed of items of '
            "/v1/latest) and `resync` (the stream fell behind: read /v1/latest again), with "
            "keep-alive comments",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def events(
    request: Request,
    principal: Reader,
    tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN}$")] = None,
    devices: Annotated[
        str | None,
        Query(
            max_length=NAMED_MAX * 65,
            description="only these devices' changes in `devices` events: their ids, comma "
            f"separated, at most {NAMED_MAX} (those of a dashboard's page); empty: none. "
            "Without it, every device of the caller's tenants. An id of a device of another "
            "tenant, or of none, is accepted and never sent",
        ),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            max_length=100,
            description="the id of the last event seen, as `Last-Event-ID` (which wins when "
            "both are given): for a client that opens a new stream (other devices) and must "
            "miss no change in between",
        ),
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=100)] = None,
) -> StreamingResponse:
    """A stream of the fleet's changes for an open dashboard, of the caller's tenants only."""
    tenants = principal.allowed_tenants(tenant)
    registry: Registry = request.app.state.registry
    start = _start(last_event_id, "Last-Event-ID", "header") if last_event_id else None
    if start is None and after:
        start = _start(after, "after", "query")
    return StreamingResponse(
        _stream(request, registry, tenants, start, _named(devices)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
