"""`lantaarn influx-users`: InfluxDB's admin, write (ingest) and read (API) logins and schema."""

from __future__ import annotations

import argparse
import asyncio
import sys

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `influx-users`."""
    del settings
    parser = commands.add_parser(
        "influx-users",
        help="create InfluxDB's admin, write and read logins, the database and retention",
        description=(
            "With `auth-enabled = true` InfluxDB 1.x starts without users. This creates the admin "
            "(LANTAARN_INFLUX__ADMIN_USERNAME and __ADMIN_PASSWORD) when there is none, the "
            "database and its retention policies, the write login ingest uses "
            "(LANTAARN_INFLUX__USERNAME, __PASSWORD: all rights on the database only) and the "
            "read login of the API (LANTAARN_INFLUX__READ_USERNAME, __READ_PASSWORD). Running it "
            "again sets the passwords anew."
        ),
    )
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Create the logins and the schema."""
    del args
    from lantaarn.influx_users import (  # noqa: PLC0415
        InfluxLogin,
        InfluxSetupError,
        ensure_influx_schema,
        ensure_influx_users,
    )

    i = settings.influx
    logins = [
        (i.admin_username, i.admin_password, "ADMIN_"),
        (i.username, i.password, ""),
        (i.read_username, i.read_password, "READ_"),
    ]
    missing = [
        f"LANTAARN_INFLUX__{p}USERNAME/__{p}PASSWORD" for u, pw, p in logins if not (u and pw)
    ]
    if missing:
        sys.stderr.write(f"lantaarn: set {', '.join(missing)}\n")
        return 2
    admin, writer, reader = (
        InfluxLogin(str(u), pw.get_secret_value()) for u, pw, _ in logins if pw
    )
    try:
        ensure_influx_users(i.url, i.database, admin, writer, reader)
        asyncio.run(ensure_influx_schema(i.url, i.database, admin, settings.retention()))
    except (InfluxSetupError, OSError) as exc:
        sys.stderr.write(f"lantaarn: {exc}\n")
        return 1
    sys.stdout.write(
        f"InfluxDB {i.url}: admin {admin.username}, {writer.username} writes, "
        f"{reader.username} reads {i.database}\n"
    )
    return 0
