"""Simulated lamps hearing commands through a tenant's fleet login on a broker with our ACL and
plugin: they subscribe to their tenant's commands and answer; a refused subscription is loud."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from broker.acl import Role, ServiceLogin
from broker.passwords import write_broker_files
from devices import BrokerLogin, Device
from devices.command_messages import CommandAck, CommandMessage, ack_topic, command_topic
from devices.provisioning import issue_credentials
from lantaarn.localstack import private_mosquitto
from simulators.clock import SimClock
from simulators.command_responder import CommandResponder, CommandsRefused
from simulators.device import SimulatedDevice
from tests.conftest import require_program

pytestmark = pytest.mark.anyio

LAMPS = [Device(f"fl-lp-{n}", "GM0363", "lamppost", f"Lamp {n}", 52.37, 4.89) for n in range(3)]
ELSEWHERE = Device("fl-lp-u", "GM0344", "lamppost", "Utrecht", 52.09, 5.12)
PASSWORDS = {"lamps": "lamps-password-for-tests", "operator": "operator-password-for-tests"}


async def test_a_tenants_lamps_hear_their_commands_through_its_fleet_login(
    tmp_path: Path,
) -> None:
    require_program("mosquitto", "mosquitto")
    services = [
        ServiceLogin.with_password("lamps", PASSWORDS["lamps"], Role.FLEET, "GM0363"),
        ServiceLogin.with_password("operator", PASSWORDS["operator"], Role.OPERATOR),
    ]
    password_file, acl_file = tmp_path / "passwd", tmp_path / "acl"
    other = issue_credentials(LAMPS[1])
    device_login = BrokerLogin(LAMPS[1].tenant, LAMPS[1].device_id, other.password_hash)
    write_broker_files([device_login], password_file, acl_file, services)
    broker = private_mosquitto(tmp_path / "broker", password_file=password_file, acl_file=acl_file)
    clock = SimClock(time.time())
    simulated = [SimulatedDevice(d, 5, clock) for d in [*LAMPS, ELSEWHERE]]
    try:
        # A subscription the broker refuses (here: a device's login listening for another
        # device's commands) stops the responder, loudly, instead of never answering.
        with pytest.raises(CommandsRefused, match="refused"):
            async with CommandResponder(
                simulated[:1],
                "::1",
                broker.port,
                client_id=other.username,
                username=other.username,
                password=other.password,
            ):
                pass
        async with (
            CommandResponder(
                simulated[:3],
                "::1",
                broker.port,
                client_id="lamps-a",
                username="lamps",
                password=PASSWORDS["lamps"],
            ),
            aiomqtt.Client(
                "::1",
                broker.port,
                identifier="operator-test",
                username="operator",
                password=PASSWORDS["operator"],
                protocol=aiomqtt.ProtocolVersion.V5,
            ) as operator,
        ):
            target = LAMPS[1]
            await operator.subscribe(ack_topic(target.tenant, target.device_id), qos=1)
            now = datetime.now(UTC)
            message = CommandMessage(
                id="c0ffee00-0000-4000-8000-000000000001",
                name="set_dim_level",
                args={"level": 35},
                issued_at=now,
                expires_at=now + timedelta(minutes=1),
            )
            await operator.publish(
                command_topic(target.tenant, target.device_id), message.payload(), qos=1
            )
            async with asyncio.timeout(20):
                answer = await anext(operator.messages)
            ack = CommandAck.model_validate_json(bytes(answer.payload))
            assert (ack.id, ack.status) == (message.id, "done")
            assert simulated[1].state.dim_setting == 35.0
    finally:
        broker.stop()
