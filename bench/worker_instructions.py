"""Instructions the ingest worker executes per message, counted by callgrind: independent of load.

The same drain as `bench.ingest` (a backlog of lamppost messages in a private Mosquitto, one
`lantaarn ingest` worker, a private InfluxDB), but the worker runs under
`valgrind --tool=callgrind` with instrumentation switched on only once it says it is subscribed
and off once InfluxDB holds every reading: start-up and shutdown are not counted. Instruction
counts do not move with the machine's load, so two checkouts can be compared one after the other.

Under valgrind the worker runs some 50 to 100 times slower, so whatever runs on a wall-clock
timer (the device-state flush every second, the registry check every two seconds) runs that
many more times per message than in a normal drain, and on a loaded machine the broker may drop
the slow worker (keep-alive) and redeliver: compare only runs whose log shows no reconnect, and
count the messages the worker's last log line says it handled. Each thread's count is reported
apart (the state flush writes to the registry in an executor thread).

`--tool cprofile` runs the worker under cProfile (CPU clock) instead, with the garbage
collector's collections counted; `--tool none` runs it bare. Both print the worker's CPU per
message split between the event loop's thread and the others (from /proc).

The same file runs against an older checkout (it only needs that checkout's `bench.ingest`):

    .venv/bin/python -P bench/worker_instructions.py --messages 20000 --out /tmp/cg-new
    cd OLD && PYTHONPATH=$PWD /path/to/.venv/bin/python -P /path/to/bench/worker_instructions.py \
        --messages 20000 --out /tmp/cg-old
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ingest import (
    TICKS,
    cpu_seconds,
    lampposts,
    publish_backlog,
    services,
    stored_count,
)
from timeseries import InfluxClient, InfluxConfig

# `--tool cprofile`: the worker under cProfile instead, its event loop's thread profiled between
# SIGUSR1 (sent once it is subscribed) and SIGUSR2 (once everything is stored), which writes
# the statistics to the file named in LANTAARN_BENCH_PROFILE.
# The garbage collector's collections in that span are counted per generation, with their CPU
# time (thread_time), in the same file's name + ".gc".
PROFILED = """
import cProfile, gc, json, os, signal, sys, time
from lantaarn.cli import main
profiler = cProfile.Profile(time.thread_time)  # CPU, not wall: the machine is shared
collections = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
began = [None]
def watch(phase, info):
    if phase == "start":
        began[0] = time.thread_time()
    elif began[0] is not None:
        entry = collections[info["generation"]]
        entry[0] += 1
        entry[1] += time.thread_time() - began[0]
def begin(*_):
    gc.callbacks.append(watch)
    profiler.enable()
def end(*_):
    profiler.disable()
    gc.callbacks.remove(watch)
    path = os.environ["LANTAARN_BENCH_PROFILE"]
    with open(path + ".gc", "w") as out:
        json.dump(collections, out)
    profiler.dump_stats(path)
signal.signal(signal.SIGUSR1, begin)
signal.signal(signal.SIGUSR2, end)
sys.exit(main())
"""


def wait_for(path: Path, offset: int, word: bytes, seconds: float) -> None:
    """Wait until the file exists and `word` appears in it after `offset`."""
    deadline = time.monotonic() + seconds
    while not path.exists() or word not in path.read_bytes()[offset:]:
        if time.monotonic() > deadline:
            raise RuntimeError(path.read_text()[-3000:])
        time.sleep(0.05)


def start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a worker; return once this start of it says it is subscribed."""
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for(log_path, offset, b"subscribed", 900)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(600)


def totals(path: Path) -> int:
    """Instructions (Ir) in one callgrind output file."""
    # With instrumentation switched on late, `summary:` stays 0 and `totals:` holds the count.
    found = re.findall(r"^(?:summary|totals): (\d+)", path.read_text(), re.MULTILINE)
    return max((int(n) for n in found), default=0)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # ended meanwhile
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def drain(messages: int, devices: int, out: Path, tool: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("callgrind.out*"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp, services(Path(tmp)) as (broker, database):
        folder = Path(tmp)
        lamps, settings = lampposts(folder, broker, database, devices)
        env = {**os.environ, **settings, "LANTAARN_INGEST__WORKERS": "1"}
        log_path = folder / "worker.log"
        worker = [sys.executable, "-m", "lantaarn", "ingest", "--index", "0"]
        stop(start(worker, env, log_path))  # the session and its shared subscription
        publish_backlog(broker.port, lamps, messages)
        if tool == "none":
            process = start(worker, env, log_path)
        elif tool == "cprofile":
            env["LANTAARN_BENCH_PROFILE"] = str(out / "worker.pstats")
            profiled = [sys.executable, "-c", PROFILED, "ingest", "--index", "0"]
            process = start(profiled, env, log_path)
            process.send_signal(signal.SIGUSR1)
        else:
            valgrind = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                "--separate-threads=yes",
                f"--callgrind-out-file={out}/callgrind.out",
            ]
            process = start(valgrind + worker, env, log_path)
            subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], check=True)
        cpu_start = cpu_seconds(process.pid)
        threads_start = thread_cpu(process.pid)
        started = time.monotonic()

        async def wait() -> int:
            async with InfluxClient(InfluxConfig(database.url)) as influx:
                deadline = time.monotonic() + 3600
                while time.monotonic() < deadline:
                    count = await stored_count(influx)
                    if count >= messages:
                        return count
                    await asyncio.sleep(0.25)
                return await stored_count(influx)

        stored = asyncio.run(wait())
        cpu = cpu_seconds(process.pid) - cpu_start
        threads_end = thread_cpu(process.pid)
        collections = ""
        if tool == "cprofile":
            process.send_signal(signal.SIGUSR2)
            wait_for(out / "worker.pstats", 0, b"", 60)
            time.sleep(1)
            collections = (out / "worker.pstats.gc").read_text()
        elif tool == "callgrind":
            subprocess.run(["callgrind_control", "-i", "off", str(process.pid)], check=True)
        elapsed = time.monotonic() - started
        stop(process)
        (out / "worker.log").write_bytes(log_path.read_bytes())
    print(f"messages {messages}, stored {stored}, loss {messages - stored}, {elapsed:.0f} s")
    print(f"worker CPU {cpu / messages * 1e6:.1f} us per message ({tool})")
    main_thread = threads_end.get(process.pid, 0.0) - threads_start.get(process.pid, 0.0)
    others = cpu - main_thread
    print(
        f"  event loop's thread {main_thread / messages * 1e6:.1f} us, other threads "
        f"{others / messages * 1e6:.1f} us per message"
    )
    if collections:
        print(f"collections (generation: [count, CPU s]): {collections}")
    if tool != "callgrind":
        return
    threads = sorted(out.glob("callgrind.out*"))
    counts = {p.name: totals(p) for p in threads}
    total = sum(counts.values())
    for name, count in counts.items():
        print(f"  {name}: {count:,} instructions, {count / messages:,.0f} per message")
    print(f"instructions per message: {total / messages:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True, help="folder for callgrind's files")
    parser.add_argument(
        "--tool",
        choices=["callgrind", "cprofile", "none"],
        default="callgrind",
        help="what the worker runs under (none: CPU per thread only)",
    )
    args = parser.parse_args()
    drain(args.messages, args.devices, args.out, args.tool)


if __name__ == "__main__":
    main()
