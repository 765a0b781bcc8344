"""The ingest workers, seen through their /metrics.

What is observable from outside: each worker serves /metrics on its own port (port + index)
from the moment it runs, with its client id as the `worker` label, whether storage takes its
writes, and (in the HTTP Date header) its clock. The broker's session table is not: Mosquitto
names no client in `$SYS`, and connecting with a worker's client id would take its session over.
"""

from __future__ import annotations

import re

import httpx

from lantaarn.doctor.clock import now, skew_finding, skew_from_date
from lantaarn.doctor.findings import Finding, Status

_SAMPLE = re.compile(r'^(lantaarn_[a-z_]+)\{worker="([^"]+)"[^}]*\} (\S+)$', re.MULTILINE)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


async def check_workers(
    count: int, prefix: str, host: str, port: int, max_skew_s: float
) -> list[Finding]:
    """One finding per worker: running (its /metrics answers), storing, its clock."""
    if not port:
        return [
            Finding(
                "ingest: workers",
                Status.INFO,
                "the workers serve no /metrics (LANTAARN_INGEST__METRICS_PORT=0): "
                "cannot tell from outside whether each one runs",
                "set LANTAARN_INGEST__METRICS_PORT so that each worker can be asked",
            )
        ]
    findings = []
    async with httpx.AsyncClient(timeout=5) as http:
        for index in range(count):
            name = f"{prefix}-{index}"
            url = _url(host, port + index)
            check = f"ingest: {name}"
            try:
                sent = now()
                answer = await http.get(url)
                answered = now()
            except httpx.HTTPError as exc:
                findings.append(
                    Finding(
                        check,
                        Status.FAIL,
                        f"does not answer at {url} ({type(exc).__name__}): its session keeps "
                        "its share of every device's messages, and nothing takes them",
                        f"start it (`systemctl start lantaarn-ingest@{index}`); if it was "
                        f"scaled down for good: `lantaarn ingest --index {index} --leave`",
                    )
                )
                continue
            samples = {
                (metric, worker): value for metric, worker, value in _SAMPLE.findall(answer.text)
            }
            if ("lantaarn_ingest_messages_total", name) not in samples:
                findings.append(
                    Finding(
                        check,
                        Status.FAIL,
                        f"{url} answers, but not as {name}",
                        "is LANTAARN_INGEST__CLIENT_ID_PREFIX the same here as on the workers?",
                    )
                )
                continue
            if float(samples.get(("lantaarn_ingest_storage_unavailable", name), "0")) > 0:
                findings.append(
                    Finding(
                        check,
                        Status.FAIL,
                        "runs, but InfluxDB does not take its writes: its backlog grows in the "
                        "broker",
                        "see the InfluxDB findings and the worker's log (`journalctl -u "
                        f"lantaarn-ingest@{index}`)",
                    )
                )
            else:
                stored = samples.get(("lantaarn_ingest_values_stored_total", name), "0")
                findings.append(
                    Finding(check, Status.OK, f"running, {float(stored):.0f} values stored")
                )
            findings.append(
                skew_finding(
                    name, skew_from_date(answer.headers.get("Date"), sent, answered), max_skew_s
                )
            )
    return findings
