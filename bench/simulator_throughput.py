"""How many QoS 1 messages a second one simulator process publishes to a local Mosquitto.

A private Mosquitto (lantaarn.localstack, our shipped configuration) on a free port; a fleet of
`--devices` devices sharing `--connections` connections; the simulated clock runs fast enough for
the fleet to reach `--rate` messages/s, over the last hours so timestamps stay in the past.
Every publication must be acknowledged by the broker before the run counts as done.

    .venv/bin/python -m bench.simulator_throughput --devices 10000 --rate 30000 --duration 20
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from broker import Connection, Login, Transport, client_context
from lantaarn.localstack import Mosquitto, free_port
from simulators import FaultRates, Links, SimClock, Simulation, make_fleet
from simulators.engine import natural_rate


def main() -> None:
    """Run the benchmark and print one result line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=30_000, help="messages/s asked for")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to publish")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--faults", default="none", help="as `lantaarn simulate --faults`")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tls", action="store_true", help="publish over TLS (a throwaway CA)")
    args = parser.parse_args()
    fleet = make_fleet(args.devices, tenants=4, seed=args.seed)
    with tempfile.TemporaryDirectory() as folder:
        broker = Mosquitto(Path(folder), free_port())
        port, tls = broker.port, None
        if args.tls:
            # The test suite's TLS broker: our configuration plus a TLS listener.
            from tests.broker.tlsbroker import TlsMosquitto, make_authority

            files = make_authority(Path(folder) / "ca")
            broker = TlsMosquitto(Path(folder) / "mosquitto", free_port(), tls=files)
            port, tls = broker.tls_port, client_context(files.ca)
        broker.start()
        try:
            speed = args.rate / natural_rate(fleet.devices)
            clock = SimClock.history(speed * args.duration, args.duration)
            simulation = Simulation(
                fleet.devices,
                seed=args.seed,
                clock=clock,
                faults=FaultRates.parse(args.faults),
                status=False,
            )
            transport = Transport()
            connections = [
                Connection("::1", port, Login(f"bench-{n}"), tls=tls)
                for n in range(args.connections)
            ]
            for connection in connections:
                transport.add(connection)
            transport.wait_connected(connections)
            links = Links.shared(transport, connections, len(fleet.devices))
            cpu = time.process_time()
            report = simulation.run(links, duration_s=args.duration)
            drained = simulation.finish(links, timeout_s=30)
            elapsed = report.elapsed_s
            cpu = time.process_time() - cpu
            transport.close_all()
        finally:
            broker.stop()
    print(
        f"devices={args.devices} connections={args.connections} asked={args.rate:.0f}/s "
        f"speed={speed:.0f}x published={report.messages} readings={report.readings} "
        f"in {elapsed:.1f} s: {report.rate:.0f} msg/s, {report.bytes / elapsed / 1e6:.1f} MB/s, "
        f"lag {report.lag_s:.0f} s simulated, acknowledged={drained} "
        f"refused={report.refused or 'none'} cpu={cpu / elapsed:.0%} "
        f"cpu/message={cpu / max(1, report.messages) * 1e6:.1f} µs tls={args.tls} "
        f"machine={platform.machine()} cpus={os.cpu_count()} python={platform.python_version()}"
    )


if __name__ == "__main__":
    main()
