"""InfluxDB logins: an admin, a write user for ingest and a read user for the API.

InfluxDB 1.x with `auth-enabled = true` accepts one statement without a login while it has no
users: creating the first admin. Everything else here runs as that admin, and may run again
(passwords are set anew, grants repeated).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from timeseries import InfluxClient, InfluxConfig, Retention, ensure_schema

log = logging.getLogger(__name__)


class InfluxSetupError(Exception):
    """InfluxDB's users could not be set up."""


@dataclass(frozen=True, slots=True)
class InfluxLogin:
    """A user name and its password."""

    username: str
    password: str = field(repr=False)


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _secret(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _run(url: str, statement: str, login: InfluxLogin | None) -> dict[str, Any]:
    auth = (login.username, login.password) if login else None
    response = httpx.post(f"{url}/query", data={"q": statement}, auth=auth, timeout=10.0)
    body: dict[str, Any] = response.json() if response.content else {}
    results: list[dict[str, Any]] = body.get("results") or []
    error = body.get("error") or next((r["error"] for r in results if "error" in r), None)
    if response.status_code >= 400 or error:
        raise InfluxSetupError(
            f"InfluxDB refused {statement.split(' WITH ', maxsplit=1)[0]!r}: {error}"
        )
    return body


def ensure_influx_users(
    url: str, database: str, admin: InfluxLogin, writer: InfluxLogin, reader: InfluxLogin
) -> None:
    """Create the admin (when InfluxDB has no users yet), the database, the writer and reader."""
    try:
        _run(url, "SHOW USERS", admin)
    except InfluxSetupError:
        # No users yet (or a wrong admin password, which the next statement then reports).
        _run(
            url,
            f"CREATE USER {_ident(admin.username)} WITH PASSWORD {_secret(admin.password)} "
            "WITH ALL PRIVILEGES",
            None,
        )
        log.info("created the InfluxDB admin %s", admin.username)
    _run(url, f"CREATE DATABASE {_ident(database)}", admin)
    for login, grant in ((writer, "ALL"), (reader, "READ")):
        name = _ident(login.username)
        try:
            _run(url, f"CREATE USER {name} WITH PASSWORD {_secret(login.password)}", admin)
        except InfluxSetupError:
            _run(url, f"SET PASSWORD FOR {name} = {_secret(login.password)}", admin)
        # Ingest also reads raw readings back for its rollups: ALL on the one database, no more.
        _run(url, f"GRANT {grant} ON {_ident(database)} TO {name}", admin)
    log.info("InfluxDB users ready: %s writes, %s reads", writer.username, reader.username)


async def ensure_influx_schema(
    url: str, database: str, admin: InfluxLogin, retention: Retention
) -> None:
    """The database and its retention policies, set up by the admin (ingest's login may not)."""
    config = InfluxConfig(url, database, admin.username, admin.password)
    async with InfluxClient(config) as client:
        await ensure_schema(client, retention)
