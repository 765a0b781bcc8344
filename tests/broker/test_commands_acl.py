"""Commands on a broker with logins and the ACL we write: the command service's `operator`
login is enough, and a device cannot answer another device's command even with its id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from api import ApiConfig, create_app
from api.keys import KeyStore, Role
from broker.acl import Role as BrokerRole
from broker.acl import ServiceLogin
from broker.command_service import CommandServiceConfig
from broker.passwords import write_broker_files
from devices import BrokerLogin, Device, Registry, Tenant
from devices.command_messages import CommandAck, ack_topic
from devices.provisioning import Credentials, issue_credentials
from lantaarn.localstack import Mosquitto, private_mosquitto
from timeseries import InfluxConfig

pytestmark = pytest.mark.anyio

SERVICE_PASSWORD = "commands-service-password-for-tests"
LAMPS = (
    Device("acl-lp-a", "GM0363", "lamppost", "A", 52.37, 4.89),
    Device("acl-lp-b", "GM0363", "lamppost", "B", 52.37, 4.90),
)


async def _state(http: httpx.AsyncClient, command_id: str) -> str:
    return str((await http.get(f"/v1/commands/{command_id}")).json()["state"])


async def _until_state(http: httpx.AsyncClient, command_id: str, state: str) -> None:
    deadline = time.monotonic() + 30
    while await _state(http, command_id) != state:
        assert time.monotonic() < deadline, f"command never became {state}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def _secured(
    folder: Path, role: BrokerRole
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Mosquitto, dict[str, Credentials]]]:
    """The API with its command service logged in with `role`, on a broker with our ACL."""
    url = f"sqlite:///{folder / 'registry.sqlite3'}"
    credentials = {d.device_id: issue_credentials(d) for d in LAMPS}
    with Registry(url) as registry, KeyStore(url) as keys:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_devices(
            LAMPS, password_hashes={i: c.password_hash for i, c in credentials.items()}
        )
        admin = keys.create(Role.ADMIN, name="admin")[1]
    service = ServiceLogin.with_password("lantaarn-commands", SERVICE_PASSWORD, role)
    password_file, acl_file = folder / "passwords", folder / "acl"
    write_broker_files(
        [BrokerLogin(d.tenant, d.device_id, credentials[d.device_id].password_hash) for d in LAMPS],
        password_file,
        acl_file,
        [service],
    )
    broker = private_mosquitto(folder / "broker", password_file=password_file, acl_file=acl_file)
    try:
        commands = CommandServiceConfig(
            "::1",
            broker.port,
            username=service.username,
            password=SERVICE_PASSWORD,
            client_id="acl-commands",
        )
        app = create_app(ApiConfig(url, InfluxConfig("http://[::1]:9"), commands=commands))
        async with app.router.lifespan_context(app):
            await asyncio.wait_for(app.state.command_service.connected.wait(), 20)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://test",
                headers={"Authorization": f"Bearer {admin}"},
            ) as http:
                yield http, app.state.command_service, broker, credentials
    finally:
        broker.stop()


async def test_a_command_the_broker_refuses_fails_and_is_not_sent(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    del mosquitto  # only to make sure the program is there (require_program)
    # An ingest login may not write commands: Mosquitto answers PUBACK "Not authorized".
    async with _secured(tmp_path, BrokerRole.INGEST) as (http, service, _, _):
        made = await http.post(
            f"/v1/devices/{LAMPS[0].device_id}/commands", json={"name": "reboot"}
        )
        command_id = made.json()["id"]
        await _until_state(http, command_id, "failed")
        stored = (await http.get(f"/v1/commands/{command_id}")).json()
        assert stored["detail"] == "the broker refused it: Not authorized"
        assert stored["sentAt"] is None
        assert [e["state"] for e in stored["events"]] == ["created", "failed"]
        assert service.counts["published"] == 0


async def test_a_device_cannot_answer_for_another_through_the_broker_acl(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    del mosquitto  # only to make sure the program is there (require_program)
    async with _secured(tmp_path, BrokerRole.OPERATOR) as (http, service, broker, credentials):
        made = await http.post(
            f"/v1/devices/{LAMPS[1].device_id}/commands", json={"name": "reboot"}
        )
        command_id = made.json()["id"]
        await _until_state(http, command_id, "sent")
        a, b = (credentials[d.device_id] for d in LAMPS)
        forged = CommandAck(id=command_id, status="failed", detail="forged").payload()
        async with aiomqtt.Client(
            "::1",
            broker.port,
            username=a.username,
            password=a.password,
            identifier=a.username,
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as device_a:
            # On lamp B's topic: the broker drops it (A may write only its own).
            await device_a.publish(ack_topic("GM0363", LAMPS[1].device_id), forged, qos=1)
            # On its own topic, naming B's command: the service refuses it. A's messages
            # arrive in order, so the first would have been seen before this one.
            await device_a.publish(ack_topic("GM0363", LAMPS[0].device_id), forged, qos=1)
            deadline = time.monotonic() + 30
            while service.counts["foreign"] < 1:
                assert time.monotonic() < deadline, "the second answer never came"
                await asyncio.sleep(0.05)
        assert await _state(http, command_id) == "sent"
        assert service.counts["applied"] == 0
        genuine = CommandAck(id=command_id, status="done").payload()
        async with aiomqtt.Client(
            "::1",
            broker.port,
            username=b.username,
            password=b.password,
            identifier=b.username,
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as device_b:
            await device_b.publish(ack_topic("GM0363", LAMPS[1].device_id), genuine, qos=1)
        await _until_state(http, command_id, "done")
