"""Ingest on this machine: readings/s stored, worker CPU per message, publish-to-queryable latency.

Private Mosquitto and InfluxDB (lantaarn.localstack), a registry of lampposts (six metrics per
message), and `lantaarn ingest` worker processes, exactly as deployed.

Drain: with the workers stopped (their sessions kept), `--messages` messages are queued in the
broker; then the workers start, and once each says it is subscribed the clock runs until
InfluxDB holds every reading. CPU time is read from /proc for each worker process over the
drain, so µs/message is the workers' own cost, without interpreter start and imports (the
broker and InfluxDB are separate processes; their CPU per message is shown too, because on a
small machine they decide how far more workers help). Loss = messages sent - readings stored.

Latency: one worker, a steady load of `--rate` messages/s, and a probe device whose readings
are polled in InfluxDB every 20 ms: the time from publishing a reading to finding it.

    .venv/bin/python -m bench.ingest --messages 100000 --workers 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from devices import Device, Registry
from lantaarn.localstack import Influx, Mosquitto, free_port
from lantaarn.seed import register_fleet
from simulators import make_fleet
from timeseries import InfluxClient, InfluxConfig

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Workers:
    """N `lantaarn ingest --index i` processes."""

    def __init__(self, env: dict[str, str], folder: Path, count: int) -> None:
        self.env = {**os.environ, **env, "LANTAARN_INGEST__WORKERS": str(count)}
        self.folder = folder
        self.count = count
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Start the workers; returns once each says it is subscribed (in this run's log)."""
        offsets = []
        for i in range(self.count):
            path = self.folder / f"worker-{i}.log"
            # A restart appends to the log: only what this run wrote counts, or the clock and
            # the CPU count would start before the interpreter has even imported our code.
            offsets.append(path.stat().st_size if path.exists() else 0)
            log = path.open("ab")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "lantaarn", "ingest", "--index", str(i)],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 30
        for i in range(self.count):
            path = self.folder / f"worker-{i}.log"
            while b"subscribed" not in path.read_bytes()[offsets[i] :]:
                if time.monotonic() > deadline:
                    raise RuntimeError(path.read_text()[-2000:])
                time.sleep(0.005)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes)

    def stop(self) -> None:
        for p in self.processes:
            p.send_signal(signal.SIGTERM)
        for p in self.processes:
            p.wait(15)
        self.processes = []


def lamppost_payload(n: int, ts_ms: int) -> bytes:
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return orjson.dumps(
        {
            "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z",
            "seq": n,
            "metrics": {
                "dim_level": float(n % 101),
                "active_power": 20.0 + n % 40,
                "active_energy": 1000.0 + n / 10,
                "operating_hours": 5000.0 + n / 100,
                "lamp_failure": 0.0,
                "supply_voltage": 229.5,
            },
        }
    )


def publisher(port: int, name: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(20_000)
    client.connect("::1", port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
    while True:
        info = client.publish(topic, payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.001)
            continue
        return info


def publish_backlog(port: int, lamps: list[Device], messages: int) -> None:
    """`messages` lamppost readings, an hour old, spread over `lamps`, published (QoS 1) and
    acknowledged by the broker at `port` before this returns: a backlog for workers to drain."""
    client = publisher(port, "bench-drain")
    base_ms = time.time_ns() // 1_000_000 - 3_600_000
    infos = []
    for n in range(messages):
        lamp = lamps[n % len(lamps)]
        topic = f"lantaarn/v1/{lamp.tenant}/{lamp.device_id}/telemetry"
        infos.append(publish(client, topic, lamppost_payload(n, base_ms + n)))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


async def stored_count(client: InfluxClient) -> int:
    result = await client.query('SELECT count("supply_voltage") FROM "raw"."lamppost"')
    return sum(int(s.values[0][1]) for s in result[0])


TLS = False  # `--tls`: workers reach the broker over TLS (publishers stay on plain MQTT)


@contextmanager
def services(folder: Path) -> Iterator[tuple[Mosquitto, Influx]]:
    broker = Mosquitto(folder / "mosquitto", free_port())
    if TLS:
        # The test suite's TLS broker: our configuration plus a TLS listener, a throwaway CA.
        from tests.broker.tlsbroker import TlsMosquitto, make_authority

        broker = TlsMosquitto(folder / "mosquitto", free_port(), tls=make_authority(folder / "ca"))
    database = Influx(folder / "influx", free_port(), free_port())
    broker.start()
    database.start()
    try:
        yield broker, database
    finally:
        broker.stop()
        database.stop()


def lampposts(
    folder: Path, broker: Mosquitto, database: Influx, devices: int
) -> tuple[list[Device], dict[str, str]]:
    """`devices` registered lampposts, and the environment for worker processes."""
    fleet = make_fleet(devices * 3, tenants=2, seed=5)
    lamps = [d for d in fleet.devices if d.kind == "lamppost"][:devices]
    registry = f"sqlite:///{folder / 'registry.sqlite3'}"
    with Registry(registry) as r:
        register_fleet(r, fleet)
    env = {
        "LANTAARN_REGISTRY_URL": registry,
        "LANTAARN_MQTT__PORT": str(broker.port),
        "LANTAARN_INFLUX__URL": database.url,
        "LANTAARN_INGEST__ROLLUP_WINDOWS": "[]",
        "LANTAARN_LOG_LEVEL": "INFO",
    }
    tls = getattr(broker, "tls", None)
    if tls is not None:
        env |= {
            "LANTAARN_MQTT__TLS": "true",
            "LANTAARN_MQTT__PORT": str(getattr(broker, "tls_port", broker.port)),
            "LANTAARN_MQTT__CA_FILE": str(tls.ca),
        }
    return lamps, env


def drain(messages: int, devices: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, services(Path(tmp)) as (broker, database):
        folder = Path(tmp)
        lamps, env = lampposts(folder, broker, database, devices)
        pool = Workers(env, folder, workers)
        pool.start()  # creates the sessions and the shared subscription
        pool.stop()
        publish_backlog(broker.port, lamps, messages)
        pool.start()
        started = time.monotonic()
        cpu_start = pool.cpu()
        others = [broker.service.process, database.service.process]
        others_start = [cpu_seconds(p.pid) for p in others if p is not None]

        async def wait() -> int:
            async with InfluxClient(InfluxConfig(database.url)) as influx:
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    count = await stored_count(influx)
                    if count >= messages:
                        return count
                    await asyncio.sleep(0.25)
                return await stored_count(influx)

        stored = asyncio.run(wait())
        elapsed = time.monotonic() - started
        cpu = pool.cpu() - cpu_start
        broker_cpu, database_cpu = (
            cpu_seconds(p.pid) - before for p, before in zip(others, others_start, strict=True) if p
        )
        pool.stop()
        return {
            "workers": workers,
            "messages": messages,
            "stored": stored,
            "loss": messages - stored,
            "seconds": elapsed,
            "readings_per_s": stored / elapsed,
            "cpu_us_per_message": cpu / messages * 1e6,
            "broker_us_per_message": broker_cpu / messages * 1e6,
            "database_us_per_message": database_cpu / messages * 1e6,
        }


def latency(rate: float, seconds: float, devices: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, services(Path(tmp)) as (broker, database):
        folder = Path(tmp)
        lamps, env = lampposts(folder, broker, database, devices)
        pool = Workers(env, folder, 1)
        pool.start()
        probe, load = lamps[0], lamps[1:]
        published: dict[int, float] = {}
        found: dict[int, float] = {}
        stop = threading.Event()

        def publish_load() -> None:
            client = publisher(broker.port, "bench-load")
            started = time.monotonic()
            n = 0
            while not stop.is_set():
                now = time.monotonic()
                if n % 100 == 0:  # ten probes a second at 1,000 messages/s
                    seq = len(published)
                    payload = lamppost_payload(seq, time.time_ns() // 1_000_000)
                    published[seq] = time.monotonic()
                    topic = f"lantaarn/v1/{probe.tenant}/{probe.device_id}/telemetry"
                    publish(client, topic, payload)
                lamp = load[n % len(load)]
                topic = f"lantaarn/v1/{lamp.tenant}/{lamp.device_id}/telemetry"
                publish(client, topic, lamppost_payload(n, time.time_ns() // 1_000_000))
                n += 1
                ahead = n / rate - (now - started)
                if ahead > 0:
                    time.sleep(ahead)
            client.disconnect()
            client.loop_stop()

        async def poll() -> None:
            q = 'SELECT last("seq") FROM "raw"."lamppost" WHERE device_id = $d'
            async with InfluxClient(InfluxConfig(database.url)) as influx:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    result = await influx.query(q, params={"d": probe.device_id})
                    for series in result[0]:
                        last = int(series.values[0][1])
                        for seq in range(last + 1):
                            found.setdefault(seq, time.monotonic())
                    await asyncio.sleep(0.02)

        thread = threading.Thread(target=publish_load, daemon=True)
        thread.start()
        asyncio.run(poll())
        stop.set()
        thread.join()
        pool.stop()
        waits = sorted(found[s] - published[s] for s in found if s in published and s > 5)
        return {
            "rate": rate,
            "samples": len(waits),
            "p50_ms": statistics.median(waits) * 1000,
            "p99_ms": waits[min(len(waits) - 1, int(len(waits) * 0.99))] * 1000,
        }


def main() -> None:
    """Run the scenarios and print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency load, messages/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="latency run length")
    parser.add_argument("--tls", action="store_true", help="workers connect over TLS")
    args = parser.parse_args()
    global TLS  # noqa: PLW0603 - one switch for the whole run, set once here
    TLS = args.tls
    print(f"## ingest, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"`{' '.join(['python -m bench.ingest', *sys.argv[1:]])}` on {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}\n"
    )
    print(
        "| workers | messages | stored | loss | seconds | readings/s "
        "| worker CPU µs/message | Mosquitto CPU µs/message | InfluxDB CPU µs/message |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for count in [int(w) for w in args.workers.split(",")]:
        r = drain(args.messages, args.devices, count)
        print(
            f"| {count} | {r['messages']:.0f} | {r['stored']:.0f} | {r['loss']:.0f} | "
            f"{r['seconds']:.1f} | {r['readings_per_s']:,.0f} | {r['cpu_us_per_message']:.1f} | "
            f"{r['broker_us_per_message']:.1f} | {r['database_us_per_message']:.1f} |",
            flush=True,
        )
    r = latency(args.rate, args.seconds, args.devices)
    print(
        f"\nPublish to queryable at {args.rate:.0f} messages/s, one worker: "
        f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms ({r['samples']:.0f} probes; "
        "polling every 20 ms adds up to 20 ms)."
    )


if __name__ == "__main__":
    main()
