"""Two command services (two API replicas) on one PostgreSQL registry and one broker: each
command is published once, by one of them, and every answer is recorded once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from broker.command_service import CommandService, CommandServiceConfig
from devices import Device, Registry, Tenant
from devices.command_history import CommandStore, Issuer, NewCommand
from lantaarn.localstack import Mosquitto
from simulators.clock import SimClock
from simulators.command_responder import CommandResponder
from simulators.device import SimulatedDevice
from tests.conftest import IN_CI
from tests.devices.conftest import POSTGRES_URL

pytestmark = pytest.mark.anyio

LAMPS = 300


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the local PostgreSQL (several replicas share one such database)."""
    engine = create_engine(POSTGRES_URL)
    schema = f"lantaarn_test_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        engine.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable: {exc.orig}")
        pytest.skip(f"PostgreSQL is not reachable: {exc.orig}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.mark.slow
async def test_two_replicas_share_the_outbox_and_the_answers(
    postgres_url: str, mosquitto: Mosquitto
) -> None:
    tag = uuid.uuid4().hex[:8]
    lamps = [
        Device(f"{tag}-lp-{i:04d}", "GM0363", "lamppost", f"Lamp {i}", 52.37, 4.89)
        for i in range(LAMPS)
    ]
    with Registry(postgres_url) as registry:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_devices(lamps)
    simulated = [SimulatedDevice(d, 7, SimClock(time.time())) for d in lamps]
    stores = [CommandStore(postgres_url), CommandStore(postgres_url)]
    for store in stores:
        store.open()
    try:
        configs = [
            CommandServiceConfig(
                "::1",
                mosquitto.port,
                client_id=f"{tag}-replica-{n}",
                share_group=f"{tag}-commands",
                session_expiry_s=600,
                publish_batch=20,  # small claims, so both replicas get a share
            )
            for n in range(2)
        ]
        async with (
            CommandResponder(simulated, "::1", mosquitto.port, client_id=f"{tag}-fleet") as fleet,
            CommandService(configs[0], stores[0]) as first,
            CommandService(configs[1], stores[1]) as second,
        ):
            await asyncio.wait_for(first.connected.wait(), 20)
            await asyncio.wait_for(second.connected.wait(), 20)
            now = datetime.now(UTC)
            made, group = stores[0].create(
                [
                    NewCommand(
                        d.tenant,
                        d.device_id,
                        "set_dim_level",
                        {"level": 35},
                        now + timedelta(minutes=5),
                    )
                    for d in lamps
                ],
                Issuer("k", "operator"),
                group_selector={"tenant": "GM0363"},
            )
            assert group is not None
            first.wake()
            second.wake()
            deadline = time.monotonic() + 60
            while stores[1].group(group.id).progress != {"done": LAMPS}:
                assert time.monotonic() < deadline, stores[1].group(group.id).progress
                await asyncio.sleep(0.1)
        # Which replica wins each claim is a race; that no command is published twice is not.
        published = first.counts["published"] + second.counts["published"]
        assert published == LAMPS
        assert fleet.counts["received"] == LAMPS  # no command reached a lamp twice
        assert first.counts["applied"] + second.counts["applied"] == LAMPS
        assert first.counts["applied"] > 0
        assert second.counts["applied"] > 0  # the shared subscription split the answers
        events = stores[0].command(made[0].id).events
        assert [e.state for e in events] == ["created", "sent", "done"]
    finally:
        for store in stores:
            store.close()
