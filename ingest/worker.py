"""The ingest worker: source -> decode/validate -> sink, acknowledging only what is stored.

`run_worker` runs one; `run_leaver` retires one for good, storing what its session still holds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from devices import Registry, parse_topic, shared_subscription
from ingest.completeness import CompletenessJob
from ingest.decode import Decoded, KnownDevice, TimeRules
from ingest.device_state import StateRecorder
from ingest.errors import LeaveInterrupted, SourceClosed
from ingest.feed import Session, Source
from ingest.registry_view import DecoderView, RegistryView
from ingest.rollups import RollupConfig, RollupJob, assigned_kinds
from ingest.sink import InfluxSink, Sink
from ingest.source import BrokerConfig, Delivery, MqttSource
from timeseries import (
    BatchWriter,
    InfluxClient,
    InfluxConfig,
    InfluxError,
    Retention,
    ensure_schema,
)
from timeseries.lineprotocol import Encoder, Point, tags
from timeseries.schema import DEVICE_STATUS, INGEST_STATS, RAW_RP

log = logging.getLogger(__name__)

STATUS_STATES = frozenset({"online", "offline"})


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Tuning of one worker: batch sizes (messages, lines) and the flush interval (seconds).

    What the operator can set has no default here: `lantaarn.settings` holds it, once, and
    builds this (`IngestSettings.worker`).
    """

    index: int
    workers: int  # how many workers share the load (each rolls up its share of kinds)
    share_group: str
    client_id_prefix: str
    batch_messages: int
    flush_interval_s: float
    receive_maximum: int
    write_lines: int
    rollups: RollupConfig
    time_rules: TimeRules
    registry_refresh_s: float = 2.0
    state_flush_s: float = 1.0  # how often the devices' newest state goes to the registry
    # SIGTERM to exit is promised within 10 s: what is left after this is for closing (about
    # 1 s on an idle machine, 2.6 s with three busy processes on two cores, over 4 s in CI's
    # busiest minutes)
    stop_within_s: float = 5.0
    # Leaving: how long nothing may arrive (after the UNSUBACK and the last ack) before the
    # session counts as drained and is deleted.
    leave_quiet_s: float = 2.0

    @property
    def client_id(self) -> str:
        """The worker's stable MQTT client id: a restarted worker resumes its session."""
        return f"{self.client_id_prefix}-{self.index}"

    @property
    def subscriptions(self) -> list[str]:
        """The shared subscriptions every worker holds: telemetry and device status."""
        return [
            shared_subscription(self.share_group, "telemetry"),
            shared_subscription(self.share_group, "status"),
        ]


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker since it started."""

    messages: int = 0
    values_stored: int = 0
    late_values: int = 0  # stored raw, but after their window's rollup was made
    lines_written: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0


def status_points(deliveries: list[Delivery], known: Mapping[str, KnownDevice]) -> list[Point]:
    """Device status points from `status` messages of registered devices, under their tenant."""
    points = []
    for delivery in deliveries:
        parsed = parse_topic(delivery.topic)
        if parsed is None:
            continue
        device = known.get(parsed.device_id)
        if device is None or device.device.tenant != parsed.tenant:
            continue
        state = delivery.payload.decode("utf-8", "replace").strip().lower()
        if state not in STATUS_STATES:
            continue
        points.append(
            Point(
                DEVICE_STATUS,
                tags(device_id=parsed.device_id, tenant=parsed.tenant),
                {"state": state},
                delivery.received_ns,
            )
        )
    return points


class Worker:
    """One ingest worker. `run()` returns when the source is closed and drained."""

    def __init__(self, config: WorkerConfig, source: Source, sink: Sink, view: DecoderView) -> None:
        self.config = config
        self.source = source
        self.sink = sink
        self.view = view
        self.stats = WorkerStats()
        # Told (device kind, time) of readings stored after their window was rolled up.
        self.on_late: Callable[[list[tuple[str, int]]], None] | None = None
        self.completeness: CompletenessJob | None = None  # the kinds it counts, for /metrics
        # Told each stored batch: keeps every device's newest reading and status for the API.
        self.state: StateRecorder | None = None

    @property
    def storage_unavailable(self) -> bool:
        """Whether the sink is retrying because storage does not answer."""
        return self.sink.unavailable

    async def run(self) -> None:
        """Move batches from the source to the sink until the source is closed.

        Batch N+1 is decoded while batch N is being written: InfluxDB works on one core while
        we decode on the other. Only one write is in flight, so acknowledgements keep the
        order of the batches, and at most two batches are held besides the source's buffer.
        """
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    batch = await self.source.batch(
                        self.config.batch_messages, self.config.flush_interval_s
                    )
                except SourceClosed:
                    break
                decoded = self.decode(batch)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self.store(batch, decoded), name="store-batch")
                writing.add_done_callback(self._stop_on_failure)
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                # We are cancelled or failing: the batch stays unacknowledged. Wait for the
                # write to end (it never acknowledges once cancelled), so that nothing of
                # ours still runs when we return.
                writing.cancel()
                await asyncio.wait([writing])

    def _stop_on_failure(self, writing: asyncio.Task[None]) -> None:
        # A fatal storage error (refused credentials) must not wait for the next message to
        # surface: closing the source ends `batch()`, and `run` then awaits the failed write.
        if not writing.cancelled() and writing.exception() is not None:
            self.source.close()

    def decode(self, batch: list[Delivery]) -> tuple[Decoded, list[Point]]:
        """Points and rejections of a batch: telemetry decoded, status messages as points."""
        decode = self.view.decoder.decode
        decoded = Decoded()
        statuses: list[Delivery] = []
        for delivery in batch:
            if delivery.topic.endswith("/status"):
                statuses.append(delivery)
            else:
                decode(delivery.topic, delivery.payload, delivery.received_ns, decoded)
        points = decoded.points
        if statuses:
            points = points + status_points(statuses, self.view.decoder.devices)
        return decoded, points

    async def store(self, batch: list[Delivery], prepared: tuple[Decoded, list[Point]]) -> None:
        """Store a decoded batch, then acknowledge it: only now is every reading safe."""
        decoded, points = prepared
        added = await self.sink.store(points, decoded.rejections, decoded.lines)
        self.source.ack(batch)
        if self.state is not None:
            # decode() put the status points after the readings
            readings = len(decoded.points)
            self.state.note(decoded.points, points[readings:], decoded.rejections)
        stats = self.stats
        stats.batches += 1
        stats.messages += len(batch)
        stats.values_stored += decoded.stored_values
        stats.late_values += decoded.late_values
        if decoded.late and self.on_late is not None:
            self.on_late(decoded.late)
        stats.lines_written += len(points)
        for rejection in (*decoded.rejections, *added):
            stats.rejected[rejection.reason.value] += rejection.count


class _FrozenHeap:
    """How many workers and APIs of this process are running with the start-up heap frozen."""

    running = 0


@contextmanager
def startup_heap_frozen() -> Iterator[None]:
    """Keep what exists when a worker starts out of the garbage collector's full collections.

    By the time a worker subscribes, its process holds some 200,000 objects that live as long
    as it does (imported modules, the registry snapshot, the clients). Each message leaves a
    few objects that outlive two collections (its Delivery and its Point stay until its batch
    is stored); once those add up to a quarter of the old heap, CPython runs a full
    collection, which walks the whole of it: about 4 us per message (bench/results/ingest.md).
    `gc.freeze()` moves the old heap to the permanent generation, so a full collection walks
    only what came after. Objects frozen here are still freed by reference counting; garbage
    in cycles among them waits until the last worker of the process returns and
    `gc.unfreeze()` hands the heap back. The API does the same once it has started
    (`lantaarn.serve`).
    """
    gc.freeze()
    _FrozenHeap.running += 1
    try:
        yield
    finally:
        _FrozenHeap.running -= 1
        if _FrozenHeap.running == 0:
            gc.unfreeze()


async def run_worker(
    config: WorkerConfig,
    broker: BrokerConfig,
    influx: InfluxConfig,
    registry: Registry,
    retention: Retention,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    observe: Callable[[Worker], None] | None = None,
) -> WorkerStats:
    """Run one worker until `stop` is set; then drain, acknowledge and leave.

    `ready` is set once the worker is subscribed and taking messages; `observe` is handed the
    worker once it exists (for its counters on /metrics). Stopping takes at most
    `config.stop_within_s`: a batch InfluxDB has not taken by then stays unacknowledged, and
    the broker hands it out again when the worker returns.
    """
    stop = stop or asyncio.Event()
    async with InfluxClient(influx) as client:
        await _wait_for_influx(client, stop)
        if stop.is_set():
            return WorkerStats()
        await ensure_schema(client, retention)
        view = RegistryView(
            registry, config.time_rules, config.registry_refresh_s, lane=config.index
        )
        await view.refresh()
        source = MqttSource(
            broker, config.client_id, config.subscriptions, receive_maximum=config.receive_maximum
        )
        writer = BatchWriter(client)
        sink = InfluxSink(writer, config.write_lines, worker=config.client_id)
        worker = Worker(config, source, sink, view)
        if observe is not None:
            observe(worker)
        kinds = assigned_kinds(config.index, config.workers)
        rollups = RollupJob(client, writer, config.rollups, kinds)
        log.info(
            "%s is worker %d of %d; it rolls up %s",
            config.client_id,
            config.index + 1,
            config.workers,
            ", ".join(kinds) if config.rollups.windows and kinds else "no kinds",
        )
        worker.on_late = rollups.mark_late
        worker.completeness = rollups.completeness
        worker.state = StateRecorder(registry, config.state_flush_s)
        with startup_heap_frozen():
            await source.open()
            if ready is not None:
                ready.set()
            try:
                async with asyncio.TaskGroup() as tasks:
                    watch = tasks.create_task(view.watch(), name="registry-watch")
                    report = tasks.create_task(_report(worker, writer), name="stats-report")
                    run = tasks.create_task(worker.run(), name="pipeline")
                    roll = tasks.create_task(rollups.run(), name="rollups")
                    record = tasks.create_task(worker.state.run(), name="device-state")
                    await stop.wait()
                    log.info("%s stopping: draining what was received", config.client_id)
                    source.close()
                    roll.cancel()
                    watch.cancel()
                    report.cancel()
                    await _finish(run, config)
                    record.cancel()  # its last flush writes what the drained batches left
            finally:
                await source.aclose()
        log.info("%s stopped: %s", config.client_id, worker.stats)
        return worker.stats


async def run_leaver(
    config: WorkerConfig,
    broker: BrokerConfig,
    influx: InfluxConfig,
    registry: Registry,
    retention: Retention,
    stop: asyncio.Event | None = None,
    observe: Callable[[Worker], None] | None = None,
) -> WorkerStats:
    """Retire worker `config.index` for good (scale-down) without stranding its messages.

    Mosquitto keeps routing a shared subscription's messages to a member whose session is
    offline, and they die with that session. So: resume the session, unsubscribe (nothing new
    is routed to it), store and acknowledge what it holds, and once `config.leave_quiet_s`
    passed with everything acknowledged and nothing new, disconnect with Session Expiry
    Interval 0 so the broker deletes it. The worker must not be running. Returns the counters
    of what was drained; raises LeaveInterrupted if `stop` is set first, and BrokerRefused if
    the broker turns us away or the connection is lost (most likely the worker still runs and
    took its session back): the session is then kept, without subscriptions, with what it
    still holds, and a later leave finishes the job.
    """
    stop = stop or asyncio.Event()
    async with InfluxClient(influx) as client:
        await _wait_for_influx(client, stop)
        if stop.is_set():
            raise LeaveInterrupted(f"{config.client_id}: stopped before InfluxDB answered")
        await ensure_schema(client, retention)
        view = RegistryView(
            registry, config.time_rules, config.registry_refresh_s, lane=config.index
        )
        await view.refresh()
        # The session expiry stays as configured until the very end: if this process dies
        # while draining, the session and its messages are still there for the next attempt.
        source = MqttSource(
            broker,
            config.client_id,
            config.subscriptions,
            receive_maximum=config.receive_maximum,
            leave=True,
        )
        worker = Worker(
            config,
            source,
            InfluxSink(BatchWriter(client), config.write_lines, worker=config.client_id),
            view,
        )
        # What it drains is the devices' newest state as much as what a running worker stores.
        worker.state = StateRecorder(registry, config.state_flush_s)
        if observe is not None:
            observe(worker)
        with startup_heap_frozen():
            await source.open()
            try:
                async with asyncio.TaskGroup() as tasks:
                    watch = tasks.create_task(view.watch(), name="registry-watch")
                    run = tasks.create_task(worker.run(), name="pipeline")
                    record = tasks.create_task(worker.state.run(), name="device-state")
                    await _until_drained(source, config.leave_quiet_s, stop)
                    if not source.session_ended:
                        source.close()  # interrupted: store what was received, keep the rest
                    watch.cancel()
                    await _finish(run, config)
                    record.cancel()  # its last flush writes what the drained batches left
            finally:
                await source.aclose()
    stats = worker.stats
    if source.refused is not None:
        raise source.refused
    if not source.session_ended:
        raise LeaveInterrupted(
            f"{config.client_id}: stopped before its session was drained; the session is kept "
            "(without subscriptions) with what it still holds: leave again to finish"
        )
    log.info(
        "%s left: drained %d messages (%d values stored, rejected %s); the broker deleted its "
        "session",
        config.client_id,
        stats.messages,
        stats.values_stored,
        dict(stats.rejected) or "none",
    )
    return stats


async def _until_drained(source: Session, quiet_s: float, stop: asyncio.Event) -> None:
    """Wait until the leaving source is drained and end its session, or until stopped/refused."""
    poll_s = min(0.05, quiet_s / 4) if quiet_s > 0 else 0.01
    while not stop.is_set() and source.refused is None:
        # The check and the DISCONNECT happen in one step of the loop: no delivery can slip
        # in between them on our side.
        quiet = source.quiet_for()  # 0 while anything is unacknowledged or not unsubscribed
        if quiet > 0 and quiet >= quiet_s and source.end_session():
            return
        await asyncio.sleep(poll_s)


async def _finish(run: asyncio.Task[None], config: WorkerConfig) -> None:
    """Let the pipeline store and acknowledge what it holds, for at most `stop_within_s`."""
    try:
        async with asyncio.timeout(config.stop_within_s):
            await asyncio.shield(run)
    except TimeoutError:
        log.warning(
            "%s: storage did not take the last batch within %.0f s; leaving it "
            "unacknowledged for redelivery",
            config.client_id,
            config.stop_within_s,
        )
        run.cancel()


async def _wait_for_influx(client: InfluxClient, stop: asyncio.Event) -> None:
    delay = 0.2
    started = time.monotonic()
    while not stop.is_set():
        try:
            await client.ping()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            if time.monotonic() - started > 5:
                log.warning("waiting for InfluxDB: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _report(worker: Worker, writer: BatchWriter, every_s: float = 10.0) -> None:
    """Store the worker's counters every `every_s` seconds (for the dashboard), log each minute."""
    last = (0, 0, 0)
    ticks = 0
    encoder = Encoder()
    worker_tags = tags(worker=worker.config.client_id)
    while True:
        await asyncio.sleep(every_s)
        s = worker.stats
        now = (s.messages, s.values_stored, sum(s.rejected.values()))
        messages, values, rejected = (a - b for a, b in zip(now, last, strict=True))
        last = now
        point = Point(
            INGEST_STATS,
            worker_tags,
            {"messages": messages, "values": values, "rejected": rejected},
            time.time_ns(),
        )
        try:
            await writer.write([encoder.line(point)], retention_policy=RAW_RP)
        except InfluxError as exc:
            log.warning("could not store the worker's counters: %s", exc)
        ticks += 1
        if ticks % max(1, round(60 / every_s)) == 0:
            log.info(
                "%s: %d messages, %d values stored, %d late, rejected %s",
                worker.config.client_id,
                s.messages,
                s.values_stored,
                s.late_values,
                dict(s.rejected) or "none",
            )
