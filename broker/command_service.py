"""The command service: publishes stored commands to devices and records their answers.

It runs beside the API (in its lifespan) or alone, and as many replicas as there are API
replicas, each with its own fixed MQTT client id:

- **Outbox.** Commands are stored first (state created); the service claims them with a lease
  (`CommandStore.claim_unsent`), publishes each on `lantaarn/v1/{tenant}/{deviceId}/cmd` (QoS 1,
  MQTT 5: Response Topic, Correlation Data = id, Message Expiry Interval = time left) and marks
  it sent once the broker's PUBACK is in. What could not be published (the broker is away) is
  given back and published after the reconnect, if its deadline has not passed.
- **Answers.** One shared subscription `$share/{group}/lantaarn/v1/+/+/cmd/ack` for all
  replicas, QoS 1, a persistent session (clean start off, a session expiry) under the fixed
  client id, so answers that arrive while the service is down wait at the broker.
- **Deadlines.** Every second, open commands past their deadline (plus a grace for answers in
  flight) become expired; every hour, the audit trail older than the retention is deleted.

aiomqtt 2.x (over paho) acknowledges a QoS 1 message to the broker before our code sees it, and
has no switch to hold that back. What keeps an answer safe: the client object lives as long as
the service, so its queue of received messages survives reconnects; messages are handled one at
a time, each an idempotent database update (a redelivered copy changes nothing) done before the
next is taken, and a failing database is retried, never skipped. What remains: a process that
dies (crash, kill -9) between the PUBACK to the broker and the database commit loses the answers
it held in memory, at most the few that came in during one update. Those commands then show
`expired` though the device may have obeyed: the record errs toward "not confirmed", never
toward a false "done".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from devices.command_history import AckOutcome, Answer, Command, CommandStore
from devices.command_messages import (
    MAX_ACK_BYTES,
    CommandAck,
    CommandMessage,
    ack_topic,
    command_topic,
)
from devices.topics import parse_topic, shared_subscription

log = logging.getLogger(__name__)

_SWEEP_S: Final = 1.0  # how often deadlines are checked and the outbox polled
_PURGE_EVERY_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class CommandServiceConfig:
    """How the command service reaches the broker, and its rules (times in seconds)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    # Fixed per replica: the persistent session that holds answers is this id's.
    client_id: str = "lantaarn-commands-0"
    share_group: str = "lantaarn-commands"
    session_expiry_s: int = 7 * 86400
    tls: ssl.SSLContext | None = None
    max_inflight: int = 20  # Mosquitto's default receive maximum for a client
    publish_batch: int = 500  # commands claimed and published at a time
    lease_s: float = 60.0  # how long a claimed command is this replica's to publish
    expiry_grace_s: float = 5.0  # answers may still be on their way at the deadline
    retention_days: float = 400.0  # how long the audit trail is kept
    reconnect_max_s: float = 10.0


class CheckedClient(aiomqtt.Client):
    """aiomqtt's client that keeps the broker's refusals: aiomqtt ends a QoS 1 publish at the
    PUBACK whatever its reason code, and Mosquitto answers a publish its ACL denies with a PUBACK
    "Not authorized" (0x87), which must not count as sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusals: dict[int, str] = {}
        self._mids: dict[asyncio.Task[Any], int] = {}
        publish = self._client.publish

        def remember_mid(*call: Any, **options: Any) -> mqtt.MQTTMessageInfo:
            # aiomqtt calls this synchronously from `publish`, in the publishing task.
            info = publish(*call, **options)
            task = asyncio.current_task()
            if task is not None:
                self._mids[task] = info.mid
            return info

        self._client.publish = remember_mid  # type: ignore[method-assign]

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if reason_code.is_failure:
            self._refusals[mid] = str(reason_code)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_checked(
        self, topic: str, payload: bytes, properties: Properties, wait_s: float
    ) -> str | None:
        """Publish with QoS 1 (waiting `wait_s` at most for the PUBACK); None when the broker
        took it, else its reason for refusing."""
        task = asyncio.current_task()
        assert task is not None
        try:
            await self.publish(topic, payload, qos=1, properties=properties, timeout=wait_s)
        finally:
            mid = self._mids.pop(task, None)
            refusal = self._refusals.pop(mid, None) if mid is not None else None
        return refusal


def publish_properties(message: CommandMessage, tenant: str, device_id: str) -> Properties:
    """The MQTT 5 properties of a command: where to answer, which command, until when."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = ack_topic(tenant, device_id)
    properties.CorrelationData = message.id.encode()
    properties.MessageExpiryInterval = message.expiry_interval_s(datetime.now(UTC))
    return properties


def command_message(command: Command) -> CommandMessage:
    """What a device receives for a stored command."""
    return CommandMessage(
        id=command.id,
        name=command.name,
        args=command.args,
        issued_at=command.created_at,
        expires_at=command.expires_at,
    )


class CommandService:
    """Publishes commands and records answers; an async context manager that runs until exit."""

    def __init__(self, config: CommandServiceConfig, store: CommandStore) -> None:
        self.config = config
        self.store = store
        self.counts: Counter[str] = Counter()  # published, and answers by AckOutcome
        self.connected = asyncio.Event()
        self._work = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> CommandService:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run_connection(), name="commands-mqtt"),
            loop.create_task(self._run_deadlines(), name="commands-deadlines"),
        ]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def wake(self) -> None:
        """New commands are stored: publish them now rather than at the next poll."""
        self._work.set()

    # -- the connection ------------------------------------------------------------------------

    def _client(self) -> CheckedClient:
        c = self.config
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = c.session_expiry_s
        client = CheckedClient(
            c.host,
            c.port,
            username=c.username,
            password=c.password,
            identifier=c.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            # Never a clean start, not even the first time: answers that came while this
            # replica was down wait in its session.
            clean_start=False,
            properties=connect,
            max_inflight_messages=c.max_inflight,
            tls_context=c.tls,
            keepalive=30,
            timeout=10,
        )
        # A batch of publishes is in flight at once on purpose; aiomqtt would warn about each.
        client.pending_calls_threshold = c.publish_batch + 1
        return client

    async def _run_connection(self) -> None:
        # One client for the service's life: its queue of received answers outlives reconnects.
        client = self._client()
        delay = 0.5
        while True:
            try:
                async with client:
                    await client.subscribe(
                        shared_subscription(self.config.share_group, "cmd/ack"), qos=1
                    )
                    log.info(
                        "command service %s connected to %s:%d",
                        self.config.client_id,
                        self.config.host,
                        self.config.port,
                    )
                    self.connected.set()
                    delay = 0.5
                    self._work.set()  # whatever waited for the broker goes out now
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                log.warning("command service lost the broker (%s); again in %.1f s", exc, delay)
            except Exception:  # a bug must not stop commands for good: logged, started again
                log.exception("command service failed; it starts again in %.1f s", delay)
            finally:
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(self.config.reconnect_max_s, delay * 2)

    async def _serve(self, client: CheckedClient) -> None:
        """Publish and record answers until either stops; the first to fail raises."""
        tasks = {
            asyncio.create_task(self._publish_loop(client), name="commands-publish"),
            asyncio.create_task(self._answers(client), name="commands-answers"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # raises what ended it (both loops run until cancelled otherwise)

    # -- answers -------------------------------------------------------------------------------

    async def _answers(self, client: aiomqtt.Client) -> None:
        """Record answers as they come, those already waiting together in one transaction.

        The next batch is taken only once this one is committed; a failing database is retried,
        never skipped, so an answer aiomqtt acknowledged is lost only if the process dies.
        """
        messages = client.messages
        while True:
            batch = [await anext(messages)]
            while len(messages) and len(batch) < self.config.publish_batch:
                batch.append(await anext(messages))
            answers = [a for a in (self._parse(m) for m in batch) if a is not None]
            if answers:
                await self._record(answers)

    def _parse(self, message: aiomqtt.Message) -> Answer | None:
        where = parse_topic(message.topic.value)
        payload = message.payload
        if where is None or where.channel != "cmd/ack" or not isinstance(payload, bytes | str):
            self.counts["invalid"] += 1
            log.warning("ignored a message on %s: not a command answer", message.topic.value)
            return None
        if len(payload) > MAX_ACK_BYTES:
            self.counts["invalid"] += 1
            log.warning("ignored an answer of %d bytes from %s", len(payload), where.device_id)
            return None
        try:
            ack = CommandAck.model_validate_json(payload)
        except ValidationError as exc:
            self.counts["invalid"] += 1
            log.warning("ignored a malformed answer from %s: %s", where.device_id, exc)
            return None
        return Answer(where.tenant, where.device_id, ack.id, ack.status, ack.detail)

    async def _record(self, answers: Sequence[Answer]) -> None:
        delay = 0.2
        while True:
            try:
                outcomes = await asyncio.to_thread(self.store.record_answers, answers)
                break
            except SQLAlchemyError as exc:
                log.warning("registry database failed recording answers (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
        for answer, outcome in zip(answers, outcomes, strict=True):
            self.counts[outcome.value] += 1
            if outcome is AckOutcome.FOREIGN:
                log.warning(
                    "device %s/%s answered command %s, which is not its own: ignored",
                    answer.tenant,
                    answer.device_id,
                    answer.command_id,
                )

    # -- publishing ----------------------------------------------------------------------------

    async def _publish_loop(self, client: CheckedClient) -> None:
        while True:
            # Poll even unwoken: other replicas store commands too. Not `wait_for`: on 3.11 it
            # returns the event's result when a cancellation meets a wake-up (on connecting, or
            # a new command), and the swallowed cancellation left the service's exit hanging.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SWEEP_S):
                    await self._work.wait()
            self._work.clear()
            while True:
                try:
                    batch = await asyncio.to_thread(
                        self.store.claim_unsent,
                        self.config.client_id,
                        limit=self.config.publish_batch,
                        lease_s=self.config.lease_s,
                    )
                except SQLAlchemyError as exc:
                    log.warning("registry database failed claiming commands: %s", exc)
                    break
                try:
                    if not batch or not await self._publish(client, batch):
                        break
                except SQLAlchemyError as exc:
                    # Published but not recorded: the lease runs out and they go out again
                    # (a device answers a repeated id alike).
                    log.warning("registry database failed recording sent commands: %s", exc)
                    break

    async def _publish(self, client: CheckedClient, batch: Sequence[Command]) -> bool:
        """Publish a batch; those the broker acknowledged become sent, the rest go back.

        False when some could not be published (they wait for the next round).
        """
        done: list[str] = []
        refused: dict[str, str] = {}

        async def one(command: Command) -> None:
            message = command_message(command)
            refusal = await client.publish_checked(
                command_topic(command.tenant, command.device_id),
                message.payload(),
                publish_properties(message, command.tenant, command.device_id),
                wait_s=30,
            )
            if refusal is None:
                done.append(command.id)
            else:
                refused[command.id] = f"the broker refused it: {refusal}"

        try:
            results = await asyncio.gather(*(one(c) for c in batch), return_exceptions=True)
        except asyncio.CancelledError:
            # The connection went: record what the broker took, give back the rest now so the
            # next connection (ours or another replica's) need not wait for the lease to end.
            self._settle(batch, done, refused)
            raise
        self.counts["published"] += len(done)
        await asyncio.to_thread(self._settle, batch, done, refused)
        if refused:
            self.counts["refused by broker"] += len(refused)
            log.error(
                "the broker refused %d command(s), e.g. %s; does login %r have the operator ACL?",
                len(refused),
                next(iter(refused.values())),
                self.config.username,
            )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            log.warning("%d command(s) not published yet: %s", len(errors), errors[0])
            return False
        return True

    def _settle(
        self, batch: Sequence[Command], done: Sequence[str], refused: Mapping[str, str]
    ) -> None:
        if done:
            self.store.mark_sent(done)
        if refused:
            self.store.fail_unsent(refused)
        settled = {*done, *refused}
        if unsent := [c.id for c in batch if c.id not in settled]:
            self.store.release(unsent)

    # -- deadlines and retention ---------------------------------------------------------------

    async def _run_deadlines(self) -> None:
        last_purge = -math.inf
        loop = asyncio.get_running_loop()
        while True:
            try:
                expired = await asyncio.to_thread(
                    self.store.expire_due, grace_s=self.config.expiry_grace_s
                )
                if expired:
                    self.counts["expired"] += expired
                    log.info("%d command(s) expired without an answer", expired)
                if loop.time() - last_purge >= _PURGE_EVERY_S:
                    before = datetime.now(UTC) - timedelta(days=self.config.retention_days)
                    purged = await asyncio.to_thread(self.store.purge, before)
                    last_purge = loop.time()
                    if purged:
                        log.info("purged %d command(s) older than the retention", purged)
            except SQLAlchemyError as exc:
                log.warning("registry database failed checking deadlines: %s", exc)
            await asyncio.sleep(_SWEEP_S)
