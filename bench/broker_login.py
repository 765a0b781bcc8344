"""What a device's CONNECT costs the broker at our PBKDF2 iteration count (and at 101).

A private Mosquitto with the shipped security (the lantaarn plugin checks every login) and device
logins hashed at each count; one paho client connects and disconnects in turn, and the report
gives the median and 95th percentile CONNECT→CONNACK time, and the broker's CPU per login.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker.acl import Role, ServiceLogin, acl_text
from broker.secrets import write_secret
from devices.provisioning import ITERATIONS, hash_password, new_password
from lantaarn.localstack import private_mosquitto


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _connect_ms(port: int, username: str, password: str) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    done = threading.Event()
    client.on_connect = lambda *_: done.set()
    started = time.perf_counter()
    client.connect("::1", port)
    client.loop_start()
    if not done.wait(10):
        raise RuntimeError("no CONNACK")
    elapsed = (time.perf_counter() - started) * 1000
    client.disconnect()
    client.loop_stop()
    return elapsed


def measure(iterations: int, logins: int) -> tuple[float, float, float]:
    """(median ms, p95 ms, broker CPU ms per login) for `logins` connects."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        passwords = {f"GM0363/bench-{n}": new_password() for n in range(logins)}
        lines = [f"{u}:{hash_password(p, iterations=iterations)}" for u, p in passwords.items()]
        ingest = ServiceLogin.with_password("lantaarn-ingest", new_password(), Role.INGEST)
        lines.append(f"{ingest.username}:{ingest.password_hash}")
        write_secret(root / "passwd", "\n".join(lines) + "\n", broker_reads=True)
        write_secret(root / "acl", acl_text([ingest]), broker_reads=True)
        broker = private_mosquitto(
            root / "mosquitto", password_file=root / "passwd", acl_file=root / "acl"
        )
        try:
            assert broker.service.process is not None
            pid = broker.service.process.pid
            cpu = _cpu_s(pid)
            times = [_connect_ms(broker.port, u, p) for u, p in passwords.items()]
            cpu_ms = (_cpu_s(pid) - cpu) * 1000 / logins
        finally:
            broker.stop()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], cpu_ms


def main() -> None:
    """Print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logins", type=int, default=200)
    args = parser.parse_args()
    print("| PBKDF2-SHA512 iterations | CONNECT→CONNACK median | p95 | broker CPU per login |")
    print("| ---: | ---: | ---: | ---: |")
    for iterations in (101, ITERATIONS):
        median, p95, cpu = measure(iterations, args.logins)
        print(f"| {iterations:,} | {median:.2f} ms | {p95:.2f} ms | {cpu:.2f} ms |")


if __name__ == "__main__":
    main()
