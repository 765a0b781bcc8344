"""Ingest workers as real processes (`python -m lantaarn ingest`), for crash and restart tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


@dataclass
class WorkerProcess:
    """One `lantaarn ingest --index N` process with its own log file."""

    env: dict[str, str]
    log_path: Path
    index: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start and wait until the worker says it is connected and subscribed."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lantaarn", "ingest", "--index", str(self.index)],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            if "subscribed" in text:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited {self.process.returncode}:\n{text[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"worker not ready:\n{self.log_path.read_text()[-3000:]}")

    def leave(self, quiet_s: float = 2.0, timeout_s: float = 90.0) -> tuple[int, str]:
        """Run `--index N --leave` to its end; returns its exit code and what it logged."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = ["ingest", "--index", str(self.index), "--leave", "--leave-quiet", str(quiet_s)]
        with self.log_path.open("ab") as log:
            code = subprocess.call(
                [sys.executable, "-m", "lantaarn", *argv],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout_s,
            )
        return code, self.log_path.read_bytes()[offset:].decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed, nothing acknowledged."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout_s: float = 10.0) -> float:
        """SIGTERM and wait; returns how long it took to exit (s)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout_s)
        return time.monotonic() - started

    def stop(self) -> None:
        """Make sure the process is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def publish_all(port: int, messages: list[tuple[str, bytes]], rate_per_s: float = 0.0) -> None:
    """Publish with QoS 1 and wait until the broker acknowledged every message."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"pub-{os.getpid()}-{time.monotonic_ns()}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(200)
    client.connect("::1", port)
    client.loop_start()
    try:
        infos = []
        started = time.monotonic()
        for n, (topic, payload) in enumerate(messages):
            infos.append(client.publish(topic, payload, qos=1))
            if rate_per_s:
                ahead = n / rate_per_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
