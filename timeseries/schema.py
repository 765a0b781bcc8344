"""The storage schema in InfluxDB: database, retention policies and measurement names.

Raw readings: one measurement per device kind (named after the kind), tags `tenant` and
`device_id`, a float field per metric plus `seq`. Rollups: `{kind}_{window}` in a retention policy
of their own; beside them, fleet rollups `{kind}_fleet_{window}` (tag `tenant`: one row per
tenant and window, the device rollups merged). Every measurement name the platform writes is
defined here, and only here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from timeseries.client import InfluxClient
from timeseries.errors import InfluxAuthFailed

log = logging.getLogger(__name__)

RAW_RP: Final = "raw"

# Measurements in the raw retention policy besides the device kinds' own.
REJECTIONS: Final = "rejection"  # the dead-letter: tags reason, worker, tenant
DEVICE_STATUS: Final = "device_status"  # a device's `status` messages: tags tenant, device_id
INGEST_STATS: Final = "ingest_stats"  # each worker's counters every few seconds: tag worker
# How far the rollups of each (kind, window) are complete; in the policy of rollup_1h.
ROLLUP_PROGRESS: Final = "rollup_progress"
# Readings received / expected per device and minute, from `seq` (timeseries.completeness);
# in the policy of rollup_1m.
COMPLETENESS: Final = "completeness"
COMPLETENESS_WINDOW: Final = "1m"
# Each hour's devices with the lowest completeness, the few of each tenant and kind
# (timeseries.completeness.lowest_lines); in the policy of rollup_1h.
COMPLETENESS_LOWEST: Final = "completeness_lowest"
_DURATION = re.compile(r"(INF|\d+[mhdw])")


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each tier is kept, as InfluxQL durations (`90d`, `104w`, `INF`)."""

    raw: str = "90d"
    rollup_1m: str = "104w"
    rollup_1h: str = "INF"

    def __post_init__(self) -> None:
        for name, duration in self.policies().items():
            if not _DURATION.fullmatch(duration):
                raise ValueError(f"retention {name}: {duration!r} is not an InfluxQL duration")

    def policies(self) -> dict[str, str]:
        """Retention policy name to duration."""
        return {RAW_RP: self.raw, "rollup_1m": self.rollup_1m, "rollup_1h": self.rollup_1h}


def raw_measurement(kind: str) -> str:
    """The measurement holding raw readings of a device kind."""
    return kind


def rollup_policy(window: str) -> str:
    """The retention policy holding rollups of a window such as `1m`."""
    return f"rollup_{window}"


def rollup_measurement(kind: str, window: str) -> str:
    """The measurement holding rollups of a device kind over a window."""
    return f"{kind}_{window}"


def fleet_rollup_measurement(kind: str, window: str) -> str:
    """The measurement holding a kind's rollups over a window merged per tenant."""
    return f"{kind}_fleet_{window}"


def fleet_progress_window(window: str) -> str:
    """The `window` tag of the progress point saying how far fleet rollups are complete."""
    return f"fleet_{window}"


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def ensure_schema(client: InfluxClient, retention: Retention) -> None:
    """Create the database and retention policies, or bring their durations up to date."""
    db = quote_ident(client.config.database)
    statements = [f"CREATE DATABASE {db}"]
    existing: set[str] = set()
    try:
        await client.execute(statements)
    except InfluxAuthFailed as exc:
        if "requires admin" not in str(exc):
            raise
        # The write user of a deployment with authentication: its admin set the schema up
        # (`lantaarn influx-users`), and changing it is not this login's to do.
        log.info("InfluxDB schema is its admin's to manage (not %s)", client.config.username)
        return
    for series in (await client.query(f"SHOW RETENTION POLICIES ON {db}", database=False))[0]:
        name_at = series.columns.index("name")
        existing.update(row[name_at] for row in series.values)
    for name, duration in retention.policies().items():
        default = " DEFAULT" if name == RAW_RP else ""
        verb = "ALTER" if name in existing else "CREATE"
        # SHARD DURATION follows InfluxDB's own defaults for the duration; only ours to set here.
        statements = [
            f"{verb} RETENTION POLICY {quote_ident(name)} ON {db} "
            f"DURATION {duration} REPLICATION 1{default}"
        ]
        await client.execute(statements)
    log.info(
        "InfluxDB schema ready: database %s, retention %s",
        client.config.database,
        retention.policies(),
    )


def one_of(tag: str, values: Sequence[str], name: str) -> tuple[str, dict[str, object]]:
    """`("tag" = $name0 OR "tag" = $name1 ...)` with the values bound as parameters.

    An empty `values` is a caller's bug (it would match nothing, or everything if left out):
    callers answer "nothing" themselves before asking InfluxDB.
    """
    if not values:
        raise ValueError(f"one_of({tag!r}) needs at least one value")
    params: dict[str, object] = {f"{name}{n}": value for n, value in enumerate(values)}
    alternatives = " OR ".join(f"{quote_ident(tag)} = ${name}{n}" for n in range(len(values)))
    return f"({alternatives})", params


def selection(
    device_ids: Sequence[str] | None, tenants: Sequence[str] | None
) -> tuple[str, dict[str, object]] | None:
    """` AND (...)` choosing some devices, or all devices of some tenants, with bound values.

    `("", {})` when neither is given (everything); None when a given list is empty (nothing).
    Devices win over tenants: a long list of all of a tenant's devices is better said as the
    tenant (InfluxDB reads the query from the URL).
    """
    if device_ids is not None:
        if not device_ids:
            return None
        clause, params = one_of("device_id", device_ids, "d")
        return f" AND {clause}", params
    if tenants is not None:
        if not tenants:
            return None
        clause, params = one_of("tenant", tenants, "t")
        return f" AND {clause}", params
    return "", {}
