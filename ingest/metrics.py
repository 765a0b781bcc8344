"""The ingest workers' counters for Prometheus, read from the running workers when scraped."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.completeness import completeness_metrics
from ingest.worker import Worker


class WorkerCollector(Collector):
    """Exposes the counters of the workers added to it (a worker of this process, or more)."""

    def __init__(self, workers: Iterable[Worker] = ()) -> None:
        self.workers: list[Worker] = list(workers)

    def add(self, worker: Worker) -> None:
        """Include one more worker (the hook `run_worker(observe=...)` calls)."""
        self.workers.append(worker)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """The metric families, one sample per worker (and per reason for rejections)."""
        messages = CounterMetricFamily(
            "lantaarn_ingest_messages", "MQTT messages taken in", labels=["worker"]
        )
        stored = CounterMetricFamily(
            "lantaarn_ingest_values_stored", "Metric values stored in InfluxDB", labels=["worker"]
        )
        late = CounterMetricFamily(
            "lantaarn_ingest_values_late",
            "Metric values stored after their window's rollup was made",
            labels=["worker"],
        )
        rejected = CounterMetricFamily(
            "lantaarn_ingest_values_rejected",
            "Metric values (or whole messages) set aside, by reason",
            labels=["worker", "reason"],
        )
        pending = GaugeMetricFamily(
            "lantaarn_ingest_unacknowledged_messages",
            "Messages received and not yet acknowledged to the broker (bounded by its "
            "receive maximum; while InfluxDB is down the backlog waits in the broker)",
            labels=["worker"],
        )
        down = GaugeMetricFamily(
            "lantaarn_ingest_storage_unavailable",
            "1 while InfluxDB does not take writes (the worker retries) or has not answered a "
            "write for a few seconds",
            labels=["worker"],
        )
        slow = CounterMetricFamily(
            "lantaarn_ingest_storage_slow_writes",
            "Writes InfluxDB took longer than a few seconds to answer",
            labels=["worker"],
        )
        for worker in self.workers:
            name = worker.config.client_id
            stats = worker.stats
            messages.add_metric([name], stats.messages)
            stored.add_metric([name], stats.values_stored)
            late.add_metric([name], stats.late_values)
            for reason, count in sorted(stats.rejected.items()):
                rejected.add_metric([name, reason], count)
            pending.add_metric([name], worker.source.received - worker.source.acked)
            down.add_metric([name], 1.0 if worker.storage_unavailable else 0.0)
            slow.add_metric([name], worker.sink.slow_writes)
        yield from (messages, stored, late, rejected, pending, down, slow)
        yield from completeness_metrics(w.completeness for w in self.workers if w.completeness)
