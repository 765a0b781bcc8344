"""Simulated devices that receive their commands over MQTT, obey and answer (aiomqtt).

Until the fleet transport subscribes (the session layer of #12), this is how simulated lamps
hear commands: either one connection for a whole fleet, subscribed to `lantaarn/v1/+/+/cmd`
as a gateway's login may be, or one device alone under its own client id with a persistent
session, so that what is sent while it is offline reaches it when it reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.command_messages import ack_topic, command_topic
from devices.topics import PREFIX, parse_topic
from simulators.device import SimulatedDevice
from simulators.faults import Fault

log = logging.getLogger(__name__)

FLEET_SUBSCRIPTION = f"{PREFIX}/+/+/cmd"


class CommandsRefused(RuntimeError):
    """The broker would not let the simulated devices hear their commands (its ACL)."""


class CommandResponder:
    """Answers the commands of `devices` until the context exits.

    `silent` device ids obey nothing and never answer (a lamp with a dead controller);
    `refusing` ones answer every command "refused" (a controller in manual override); devices
    whose fault mix gave them `never_answers` or `refuses_commands` behave alike.
    `counts` says what was received and answered.
    """

    def __init__(
        self,
        devices: Sequence[SimulatedDevice],
        host: str,
        port: int,
        *,
        client_id: str,
        session_expiry_s: int = 3600,
        silent: Collection[str] = (),
        refusing: Collection[str] = (),
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.devices = {d.device.device_id: d for d in devices}
        self.host = host
        self.port = port
        self.client_id = client_id
        self.session_expiry_s = session_expiry_s
        self.silent = frozenset(silent) | _having(devices, Fault.NEVER_ANSWERS)
        self.refusing = frozenset(refusing) | _having(devices, Fault.REFUSES_COMMANDS)
        self.username = username
        self.password = password
        self.tls = tls
        self.counts: Counter[str] = Counter()
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscription(self) -> str:
        """One device's own command topic, its tenant's for a fleet of one tenant (a fleet
        login may read only its tenant's, and Mosquitto refuses a wider subscription), or
        every device's for a fleet of several."""
        if len(self.devices) == 1:
            (device,) = self.devices.values()
            return command_topic(device.device.tenant, device.device.device_id)
        tenants = {d.device.tenant for d in self.devices.values()}
        if len(tenants) == 1:
            return f"{PREFIX}/{tenants.pop()}/+/cmd"
        return FLEET_SUBSCRIPTION

    async def __aenter__(self) -> CommandResponder:
        self._task = asyncio.create_task(self._run(), name=f"responder-{self.client_id}")
        waiter = asyncio.create_task(self.subscribed.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiter.cancel()
            self._task.result()  # raises what stopped it
        return self

    async def ended(self) -> None:
        """Wait until the responder stops on its own (it raises what stopped it)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = self.session_expiry_s
        async with aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=connect,
            max_inflight_messages=20,
            tls_context=self.tls,
        ) as client:
            client.pending_calls_threshold = 1_000_000  # answers are in flight together
            granted = await client.subscribe(self.subscription, qos=1)
            refused = [
                str(code) for code in granted if isinstance(code, ReasonCode) and code.is_failure
            ]
            if refused:
                # Silently never answering would look like a fleet of dead lamps.
                raise CommandsRefused(
                    f"the broker refused {self.client_id}'s subscription to "
                    f"{self.subscription}: {', '.join(refused)}"
                )
            self.subscribed.set()
            answering: set[asyncio.Task[None]] = set()
            async for message in client.messages:
                task = self._answer(client, message)
                if task is not None:
                    answering.add(task)
                    task.add_done_callback(answering.discard)

    def _answer(
        self, client: aiomqtt.Client, message: aiomqtt.Message
    ) -> asyncio.Task[None] | None:
        where = parse_topic(message.topic.value)
        device = self.devices.get(where.device_id) if where is not None else None
        if where is None or device is None or not isinstance(message.payload, bytes):
            self.counts["not ours"] += 1
            return None
        self.counts["received"] += 1
        if where.device_id in self.silent:
            return None
        if where.device_id in self.refusing:
            answer = device.refuse(message.payload, time.time(), "in manual override")
        else:
            answer = device.command(message.payload, time.time())
        self.counts[answer.status] += 1
        return asyncio.create_task(
            client.publish(ack_topic(where.tenant, where.device_id), answer.payload(), qos=1)
        )


def _having(devices: Sequence[SimulatedDevice], fault: Fault) -> frozenset[str]:
    return frozenset(d.device.device_id for d in devices if d.command_fault is fault)


class OfflineSpells:
    """One lamp with the `offline_spells` fault: online for `online_s`, then gone for
    `offline_s` seconds, over and over, under its own client id with a persistent session, so
    the broker keeps what is sent meanwhile and hands it over when the lamp is back.

    `online` is set while it is connected; `counts` adds up every connection's counts.
    """

    def __init__(
        self,
        device: SimulatedDevice,
        host: str,
        port: int,
        *,
        client_id: str,
        online_s: float,
        offline_s: float,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.device = device
        self.host = host
        self.port = port
        self.client_id = client_id
        self.online_s = online_s
        self.offline_s = offline_s
        self.username = username
        self.password = password
        self.tls = tls
        self.online = asyncio.Event()
        self.spells = 0  # offline spells begun
        self.counts: Counter[str] = Counter()

    async def run(self) -> None:
        """Come and go until cancelled."""
        while True:
            responder = CommandResponder(
                [self.device],
                self.host,
                self.port,
                client_id=self.client_id,
                # Long enough that the session outlives the spell away.
                session_expiry_s=max(3600, int(self.offline_s * 4)),
                username=self.username,
                password=self.password,
                tls=self.tls,
            )
            try:
                async with responder:
                    self.online.set()
                    await asyncio.sleep(self.online_s)
            finally:
                self.online.clear()
                self.counts.update(responder.counts)
            self.spells += 1
            await asyncio.sleep(self.offline_s)


class FaultyFleet:
    """The fleet's command answers with its command faults: one `CommandResponder` for the
    devices that stay connected, an `OfflineSpells` per device that comes and goes (its client
    id is the fleet's followed by its device id)."""

    def __init__(
        self,
        devices: Sequence[SimulatedDevice],
        host: str,
        port: int,
        *,
        client_id: str,
        online_s: float = 20.0,
        offline_s: float = 40.0,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        present = [d for d in devices if d.command_fault is not Fault.OFFLINE_SPELLS]
        self.responder = (
            CommandResponder(
                present,
                host,
                port,
                client_id=client_id,
                username=username,
                password=password,
                tls=tls,
            )
            if present
            else None
        )
        self.away = [
            OfflineSpells(
                d,
                host,
                port,
                client_id=f"{client_id}-{d.device.device_id}",
                online_s=online_s,
                offline_s=offline_s,
                username=username,
                password=password,
                tls=tls,
            )
            for d in devices
            if d.command_fault is Fault.OFFLINE_SPELLS
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> FaultyFleet:
        if self.responder is not None:
            await self.responder.__aenter__()
        self._tasks = [asyncio.create_task(a.run(), name=a.client_id) for a in self.away]
        return self

    async def ended(self) -> None:
        """Wait until a part stops on its own (it raises what stopped it)."""
        waiting: list[asyncio.Future[None]] = [asyncio.shield(t) for t in self._tasks]
        if self.responder is not None:
            waiting.append(asyncio.ensure_future(self.responder.ended()))
        if not waiting:
            await asyncio.Event().wait()  # nothing can end: wait to be cancelled
        try:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                future.result()
        finally:
            for future in waiting:
                future.cancel()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.responder is not None:
            await self.responder.__aexit__(et, e, tb)


def respond_in_thread(
    devices: Sequence[SimulatedDevice],
    host: str,
    port: int,
    stop: threading.Event,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    ready: threading.Event | None = None,
) -> threading.Thread:
    """Answer the fleet's commands from a thread of its own until `stop` is set.

    For the thread-based simulation engine: the same `SimulatedDevice` objects it ticks obey the
    commands, so their telemetry follows (plain attribute writes; a reading taken meanwhile has
    the old or the new level). A lost broker is retried every second. `ready` is set once the
    devices listen: a command sent before that, to a fleet whose session never subscribed, is
    kept by no one. Devices given a command fault by the fault mix refuse, never answer, or
    come and go (see `FaultyFleet`).
    """

    async def main() -> None:
        stopped = asyncio.create_task(asyncio.to_thread(stop.wait))
        while not stop.is_set():
            try:
                async with FaultyFleet(
                    devices,
                    host,
                    port,
                    client_id=client_id,
                    username=username,
                    password=password,
                    tls=tls,
                ) as responder:
                    if ready is not None:
                        ready.set()
                    ended = asyncio.create_task(responder.ended())
                    await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
                    if ended.done():
                        ended.result()  # what ended it
                    ended.cancel()
            except aiomqtt.MqttError as exc:
                log.warning("command responder lost the broker (%s); again in 1 s", exc)
                await asyncio.sleep(1.0)
        await stopped

    thread = threading.Thread(
        target=asyncio.run, args=(main(),), name="command-responder", daemon=True
    )
    thread.start()
    return thread


@dataclass(frozen=True, slots=True)
class TenantLogin:
    """The connection through which one tenant's simulated devices hear their commands: a
    fleet login may read its own tenant's command topics only."""

    tenant: str
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def answer_per_tenant(
    devices: Sequence[SimulatedDevice],
    host: str,
    port: int,
    stop: threading.Event,
    logins: Sequence[TenantLogin],
    *,
    tls: ssl.SSLContext | None = None,
) -> list[threading.Event]:
    """Each tenant's devices answer their commands from a thread of their own under that
    tenant's login (`respond_in_thread`) until `stop`; the events are set once each listens.
    Tenants without a login, or without devices, answer nothing."""
    ready = []
    for login in logins:
        own = [d for d in devices if d.device.tenant == login.tenant]
        if not own:
            continue
        listening = threading.Event()
        respond_in_thread(
            own,
            host,
            port,
            stop,
            client_id=login.client_id,
            username=login.username,
            password=login.password,
            tls=tls,
            ready=listening,
        )
        ready.append(listening)
    return ready
