"""The worker's own per-message work, in process: decode and validate, then encode for InfluxDB.

What `Worker.decode` and `InfluxSink.store` do to a batch before the HTTP request, without the
MQTT socket, the HTTP request and the database: the part of the worker's CPU per message that
the pipeline's code decides, measured without the noise of the other processes.
`bench.ingest` measures the whole worker.

    .venv/bin/python -m bench.pipeline --messages 100000

It also runs against another checkout of the project (an older one has no `bench/pipeline.py`
and a different `Decoded`), taking that checkout's code from the current directory:

    cd /path/to/old/checkout && PYTHONPATH=. /path/to/this/.venv/bin/python -P \\
        /path/to/this/bench/pipeline.py --messages 20000
"""

from __future__ import annotations

import argparse
import time

import orjson

from bench.ingest import lamppost_payload
from devices import Device
from ingest.decode import Decoded, Decoder, prepare
from simulators import make_fleet

try:
    from timeseries.lineprotocol import Encoder
except ImportError:  # a checkout from before the typed pipeline: its decoder made the lines
    Encoder = None  # type: ignore[assignment,misc]

# (topic, payload, receive time in ns): what the worker's decoding reads of a delivery
Message = tuple[str, bytes, int]


def deliveries(messages: int, lamps: list[Device], with_ts: bool) -> list[Message]:
    """Six-metric lamppost messages spread over `lamps`, as the source hands them out."""
    now_ns = time.time_ns()
    base_ms = now_ns // 1_000_000 - 3_600_000
    out = []
    for n in range(messages):
        lamp = lamps[n % len(lamps)]
        payload = lamppost_payload(n, base_ms + n)
        if not with_ts:
            message = orjson.loads(payload)
            del message["ts"]
            payload = orjson.dumps(message)
        topic = f"lantaarn/v1/{lamp.tenant}/{lamp.device_id}/telemetry"
        out.append((topic, payload, now_ns + n))
    return out


def lines_of(decoded: Decoded, encoder: object) -> list[str]:
    """The batch's lines as the sink gets them: those the decoder encoded (all of them, and
    before the typed pipeline the only thing it made), then the points it did not encode."""
    lines: list[str] = list(getattr(decoded, "lines", ()))
    points = getattr(decoded, "points", ())
    if len(points) > len(lines):
        assert isinstance(encoder, Encoder)
        lines.extend(encoder.lines(points[len(lines) :]))
    return lines


def per_message_us(batch: list[Message], decoder: Decoder, rounds: int) -> float:
    """CPU µs per message to decode the batch and encode its points (best of `rounds`: the
    machine is shared, and interference only ever adds)."""
    times = []
    encoder = Encoder() if Encoder is not None else None
    for _ in range(rounds):
        started = time.process_time()
        for start in range(0, len(batch), 2000):  # the worker's batch size
            decoded = Decoded()
            decode = decoder.decode
            for topic, payload, received_ns in batch[start : start + 2000]:
                decode(topic, payload, received_ns, decoded)
            lines = lines_of(decoded, encoder)
            assert lines
        times.append(time.process_time() - started)
    return min(times) / len(batch) * 1e6


def main() -> None:
    """Print µs per message with and without `ts`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    fleet = make_fleet(args.devices * 3, tenants=2, seed=5)
    lamps = [d for d in fleet.devices if d.kind == "lamppost"][: args.devices]
    decoder = Decoder(prepare(lamps))
    for with_ts in (True, False):
        batch = deliveries(args.messages, lamps, with_ts)
        us = per_message_us(batch, decoder, args.rounds)
        print(f"six-metric lamppost messages, {'with' if with_ts else 'without'} ts: {us:.2f} µs")


if __name__ == "__main__":
    main()
