"""A group command to a fleet of simulated lamps: time until every lamp is in a final state, and
the CPU the API process (with its command service) spent on it.

A private Mosquitto, a registry of `--lamps` lamps (SQLite, or `--registry-url`), the API as its
own process (`lantaarn api` with `LANTAARN_COMMANDS__ENABLED=true`), and in this process one
aiomqtt connection answering for every lamp (as a gateway would). One POST /v1/commands with the
selector {tenant, kind}; then GET /v1/command-groups/{id} every 0.2 s until it is finished.

    .venv/bin/python -m bench.commands --lamps 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from api.keys import KeyStore, Role
from devices import Device, Registry, Tenant
from lantaarn.localstack import free_port, private_mosquitto
from simulators.clock import SimClock
from simulators.command_responder import CommandResponder
from simulators.device import SimulatedDevice

RESULTS = Path(__file__).resolve().parent / "results" / "commands.md"
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _lamps(count: int) -> list[Device]:
    return [
        Device(
            f"bench-lp-{i:06d}",
            "GM0363",
            "lamppost",
            f"Lamp {i}",
            52.30 + (i % 200) * 0.0005,
            4.80 + (i // 200) * 0.0005,
        )
        for i in range(count)
    ]


async def _wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"{url}/v1/health/live")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("the API did not come up")


async def _run(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    broker = private_mosquitto(folder / "broker")
    url = args.registry_url or f"sqlite:///{folder / 'registry.sqlite3'}"
    devices = _lamps(args.lamps)
    with Registry(url) as registry, KeyStore(url) as keys:
        registry.add_tenant(Tenant("GM0363", "Amsterdam"))
        registry.add_devices(devices)
        key = keys.create(Role.OPERATOR, ["GM0363"], name="bench")[1]
    port = free_port()
    env = {
        **os.environ,
        "LANTAARN_DATA_DIR": str(folder / "data"),
        "LANTAARN_REGISTRY_URL": url,
        "LANTAARN_MQTT__HOST": "::1",
        "LANTAARN_MQTT__PORT": str(broker.port),
        "LANTAARN_INFLUX__URL": "http://[::1]:9",
        "LANTAARN_COMMANDS__ENABLED": "true",
        "LANTAARN_COMMANDS__MAX_INFLIGHT": str(args.inflight),
        "LANTAARN_LOG_LEVEL": "WARNING",
    }
    lantaarn = Path(sys.executable).parent / "lantaarn"
    api = await asyncio.create_subprocess_exec(
        str(lantaarn), "api", "--host", "::1", "--port", str(port), env=env
    )
    base = f"http://[::1]:{port}"
    clock = SimClock(time.time())
    simulated = [SimulatedDevice(d, 7, clock) for d in devices]
    try:
        await _wait_ready(base)
        async with (
            CommandResponder(simulated, "::1", broker.port, client_id="bench-fleet") as fleet,
            httpx.AsyncClient(base_url=base, timeout=120) as http,
        ):
            await asyncio.sleep(2.0)  # let the command service connect and settle
            api_cpu0, own_cpu0 = _cpu_s(api.pid), time.process_time()
            t0 = time.perf_counter()
            response = await http.post(
                "/v1/commands",
                json={
                    "name": "set_dim_level",
                    "args": {"level": 40},
                    "deadlineSeconds": 600,
                    "selector": {"tenant": "GM0363", "kind": "lamppost"},
                },
                headers={"Authorization": f"Bearer {key}"},
            )
            accepted = time.perf_counter() - t0
            response.raise_for_status()
            location = response.headers["location"]
            all_sent = None
            while True:
                group = (
                    await http.get(location, headers={"Authorization": f"Bearer {key}"})
                ).json()
                progress = group["progress"]
                if all_sent is None and not progress.get("created"):
                    all_sent = time.perf_counter() - t0
                if group["finished"]:
                    break
                await asyncio.sleep(0.2)
            total = time.perf_counter() - t0
            api_cpu = _cpu_s(api.pid) - api_cpu0
            own_cpu = time.process_time() - own_cpu0
        obeyed = sum(s.state.dim_setting == 40.0 for s in simulated)
        return {
            "lamps": args.lamps,
            "accepted_s": accepted,
            "sent_s": all_sent or total,
            "final_s": total,
            "api_cpu_s": api_cpu,
            "responder_cpu_s": own_cpu,
            "done": progress.get("done", 0),
            "other": sum(v for k, v in progress.items() if k != "done"),
            "received": fleet.counts["received"],
            "obeyed": obeyed,
        }
    finally:
        api.terminate()
        await asyncio.wait_for(api.wait(), 20)
        broker.stop()


def main() -> None:
    """Run the scenario and append its report to bench/results/commands.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lamps", type=int, default=10_000)
    parser.add_argument("--inflight", type=int, default=1000, help="QoS 1 publishes in flight")
    parser.add_argument("--registry-url", help="SQLAlchemy URL (default: SQLite in a tmp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lantaarn-bench-") as folder:
        result = asyncio.run(_run(args, Path(folder)))
    database = "PostgreSQL" if args.registry_url else "SQLite"
    command = " ".join(["python -m bench.commands", *sys.argv[1:]])
    report = f"""
## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — group command to {result["lamps"]:,} lamps

`{command}` on {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}),
registry on {database}, Mosquitto 2.0 private, API + command service in one process
(`lantaarn api`), all lamps answered by one aiomqtt connection in the bench process.

| step | seconds |
| --- | --- |
| POST /v1/commands answered (202, commands stored) | {result["accepted_s"]:.2f} |
| every command sent (broker PUBACK recorded) | {result["sent_s"]:.2f} |
| every lamp in a final state | {result["final_s"]:.2f} |
| CPU of the API process (API + command service) | {result["api_cpu_s"]:.2f} |
| CPU of the bench process (the lamps' responder, polling) | {result["responder_cpu_s"]:.2f} |

Final states: {result["done"]:,} done, {result["other"]:,} other; the lamps received
{result["received"]:,} commands and {result["obeyed"]:,} run at the new dim level.
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Group commands\n\nAppended by `python -m bench.commands`; newest last.\n"
        )
    with RESULTS.open("a") as out:
        out.write(report)
    sys.stdout.write(report)


if __name__ == "__main__":
    main()
