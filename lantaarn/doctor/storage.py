"""InfluxDB from the outside: reachable, its clock, the database and retention as configured."""

from __future__ import annotations

import re

import httpx

from lantaarn.doctor.clock import now, skew_finding, skew_from_date
from lantaarn.doctor.findings import Finding, Status
from timeseries import InfluxClient, InfluxConfig, InfluxError, Retention
from timeseries.schema import quote_ident

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_GO_DURATION = re.compile(r"(\d+)([hms])")


def setting_seconds(duration: str) -> int:
    """An InfluxQL duration from the settings (`90d`, `104w`, `INF`) in seconds; INF is 0."""
    if duration.upper() == "INF":
        return 0
    return int(duration[:-1]) * _UNITS[duration[-1]]


def stored_seconds(duration: str) -> int:
    """A duration as SHOW RETENTION POLICIES gives it (`2160h0m0s`; `0s` is infinite)."""
    return sum(int(n) * _UNITS[unit] for n, unit in _GO_DURATION.findall(duration))


async def check_influx(
    config: InfluxConfig, retention: Retention, max_skew_s: float
) -> list[Finding]:
    """Ping (with the server's clock), then the database and its retention policies."""
    check = "influxdb: reachable"
    try:
        async with httpx.AsyncClient(base_url=config.url, timeout=10) as http:
            sent = now()
            answer = await http.get("/ping")
            answered = now()
    except httpx.HTTPError as exc:
        return [
            Finding(
                check,
                Status.FAIL,
                f"no answer at {config.url}: {exc!r}",
                "check LANTAARN_INFLUX__URL; is InfluxDB running? `systemctl status influxdb`",
            )
        ]
    if answer.status_code != 204:
        return [Finding(check, Status.FAIL, f"/ping answered {answer.status_code}")]
    version = answer.headers.get("X-Influxdb-Version", "?")
    findings = [Finding(check, Status.OK, f"InfluxDB {version} at {config.url}")]
    findings.append(
        skew_finding(
            "influxdb", skew_from_date(answer.headers.get("Date"), sent, answered), max_skew_s
        )
    )
    findings += await _check_schema(config, retention)
    return findings


async def _check_schema(config: InfluxConfig, retention: Retention) -> list[Finding]:
    check = "influxdb: database"
    db = config.database
    try:
        async with InfluxClient(config) as client:
            databases = (await client.query("SHOW DATABASES", database=False))[0]
            names = {row[0] for series in databases for row in series.values}
            if db not in names:
                return [
                    Finding(
                        check,
                        Status.FAIL,
                        f"database {db!r} does not exist: no ingest worker has started yet",
                        "start the workers (`systemctl start lantaarn-ingest@0`): they create it",
                    )
                ]
            result = await client.query(
                f"SHOW RETENTION POLICIES ON {quote_ident(db)}", database=False
            )
    except InfluxError as exc:
        return [
            Finding(
                check,
                Status.FAIL,
                str(exc),
                "check LANTAARN_INFLUX__USERNAME/PASSWORD (or TOKEN) and the user's rights",
            )
        ]
    stored: dict[str, tuple[int, bool]] = {}
    for series in result[0]:
        at = {name: n for n, name in enumerate(series.columns)}
        for row in series.values:
            stored[row[at["name"]]] = (
                stored_seconds(row[at["duration"]]),
                bool(row[at["default"]]),
            )
    findings = []
    fix = "start an ingest worker: it sets the policies from the settings (ensure_schema)"
    for name, duration in retention.policies().items():
        want = setting_seconds(duration)
        if name not in stored:
            findings.append(
                Finding("influxdb: retention", Status.FAIL, f"policy {name!r} is missing", fix)
            )
        elif stored[name][0] != want:
            have = stored[name][0]
            shown = "INF" if have == 0 else f"{have // 86400}d"
            # Shorter than configured deletes data the settings promise to keep.
            status = Status.FAIL if want == 0 or 0 < have < want else Status.WARN
            findings.append(
                Finding(
                    "influxdb: retention",
                    status,
                    f"policy {name!r} keeps {shown}, the settings say {duration}",
                    fix,
                )
            )
    if not findings:
        findings.append(
            Finding(
                "influxdb: retention",
                Status.OK,
                f"database {db!r}: "
                + ", ".join(f"{n} {d}" for n, d in retention.policies().items()),
            )
        )
    return findings
