"""`lantaarn simulate` answers commands as the demo's fleet does: its lamps obey, their telemetry
follows, and the command faults of `--faults` refuse; all on a real Mosquitto."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import orjson
import pytest

from devices import Device
from devices.command_messages import CommandAck, CommandMessage, ack_topic, command_topic
from devices.topics import topic as telemetry_topic
from lantaarn.localstack import Mosquitto
from simulators import Fault, FaultRates, SimClock, make_fleet
from simulators.device import SimulatedDevice

pytestmark = pytest.mark.anyio

DEVICES = 24
FAULTS = "refuses_commands=0.5"


def _lamps_by_fault(seed: int) -> dict[Fault | None, Device]:
    """The first lamppost of each command fault that `--seed seed --faults FAULTS` gives."""
    clock, rates = SimClock(time.time()), FaultRates.parse(FAULTS)
    found: dict[Fault | None, Device] = {}
    for device in make_fleet(DEVICES, tenants=2, seed=seed).devices:
        if device.kind == "lamppost":
            found.setdefault(SimulatedDevice(device, seed, clock, rates).command_fault, device)
    return found


@contextmanager
def _simulating(mosquitto: Mosquitto, seed: int, log: Path) -> Iterator[subprocess.Popen[str]]:
    """`lantaarn simulate` against the broker until the block ends (then stopped by SIGTERM)."""
    with (
        log.open("w") as errors,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lantaarn",
                "simulate",
                *("--devices", str(DEVICES), "--seed", str(seed), "--interval", "0.5"),
                *("--host", "::1", "--port", str(mosquitto.port), "--faults", FAULTS),
            ],
            env={**os.environ, "LANTAARN_REGISTRY_URL": "sqlite://"},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        ) as process,
    ):
        try:
            assert process.stdout is not None
            # It says "simulating ..." once its devices listen for commands.
            first = process.stdout.readline()
            assert first.startswith("simulating"), first + log.read_text()
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            finally:
                process.kill()


async def _command(
    client: aiomqtt.Client, lamp: Device, name: str, args: dict[str, object]
) -> CommandAck:
    """Send one command as the platform does and wait for the lamp's answer."""
    now = datetime.now(UTC)
    message = CommandMessage(
        id=f"{name}-{lamp.device_id}",
        name=name,
        args=args,
        issued_at=now,
        expires_at=now + timedelta(minutes=1),
    )
    await client.publish(command_topic(lamp.tenant, lamp.device_id), message.payload(), qos=1)
    async with asyncio.timeout(20):
        async for received in client.messages:
            if received.topic.value == ack_topic(lamp.tenant, lamp.device_id):
                assert isinstance(received.payload, bytes)
                ack = CommandAck.model_validate_json(received.payload)
                if ack.id == message.id:
                    return ack
    raise AssertionError("the message stream ended")


async def _dim_level_reported(client: aiomqtt.Client, lamp: Device, level: float) -> None:
    async with asyncio.timeout(20):
        async for received in client.messages:
            if received.topic.value == telemetry_topic(lamp.tenant, lamp.device_id):
                assert isinstance(received.payload, bytes)
                body = orjson.loads(received.payload)
                readings = body.get("readings", [body])
                if any(r["metrics"].get("dim_level") == level for r in readings):
                    return


async def test_simulate_answers_commands_and_its_faults_refuse(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # The faults follow the seed: take the first that gives an obeying and a refusing lamp.
    seed = next(
        s for s in range(1, 100) if {None, Fault.REFUSES_COMMANDS} <= set(_lamps_by_fault(s))
    )
    lamps = _lamps_by_fault(seed)
    obeying, refusing = lamps[None], lamps[Fault.REFUSES_COMMANDS]
    with _simulating(mosquitto, seed, tmp_path / "simulate.log") as process:
        async with aiomqtt.Client(
            "::1", mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as platform:
            for lamp in (obeying, refusing):
                await platform.subscribe(ack_topic(lamp.tenant, lamp.device_id), qos=1)
            await platform.subscribe(telemetry_topic(obeying.tenant, obeying.device_id), qos=1)
            switched = await _command(platform, obeying, "switch", {"on": True})
            dimmed = await _command(platform, obeying, "set_dim_level", {"level": 35})
            refused = await _command(platform, refusing, "set_dim_level", {"level": 35})
            await _dim_level_reported(platform, obeying, 35.0)
        assert process.poll() is None, "the simulator stopped by itself"
    assert (switched.status, dimmed.status) == ("done", "done")
    assert (refused.status, refused.detail) == ("refused", "in manual override")
    assert process.returncode == 0, (tmp_path / "simulate.log").read_text()
