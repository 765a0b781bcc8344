"""`lantaarn keys`: create, list and revoke the API's keys."""

from __future__ import annotations

import argparse
import sys

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings

ROLES = ("viewer", "operator", "admin")


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `keys` with `create`, `list` and `revoke`."""
    del settings
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="make a new key; it is printed once and only its hash is stored"
    )
    create.add_argument(
        "--role",
        choices=ROLES,
        required=True,
        help="viewer reads; operator also changes devices; admin may do everything",
    )
    create.add_argument(
        "--tenant",
        action="append",
        metavar="CODE",
        help="a tenant the key covers, e.g. GM0363 (repeatable; default: every tenant)",
    )
    create.add_argument("--name", default="", help="what the key is for, shown by `list`")
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="show every key (never its secret)")
    listing.add_argument("--active", action="store_true", help="leave out revoked keys")
    listing.set_defaults(run=run_list)
    revoke = actions.add_parser("revoke", help="stop a key from working, from now on")
    revoke.add_argument("key_id", metavar="ID", help="the key's id, as `list` shows it")
    revoke.set_defaults(run=run_revoke)


def run_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a key and print it."""
    from api.keys import InvalidKeySpec, KeyStore, Role  # noqa: PLC0415
    from devices import NotFound, Registry  # noqa: PLC0415

    url = settings.registry()
    tenants = sorted(set(args.tenant)) if args.tenant else None
    with Registry(url) as registry:
        for code in tenants or ():
            try:
                registry.tenant(code)
            except NotFound:
                print(f"lantaarn: tenant {code!r} is not in the registry", file=sys.stderr)  # noqa: T201
                return 2
    try:
        with KeyStore(url) as store:
            key, secret = store.create(Role(args.role), tenants, args.name)
    except InvalidKeySpec as exc:
        print(f"lantaarn: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    scope = ", ".join(sorted(key.tenants)) if key.tenants is not None else "every tenant"
    print(  # noqa: T201
        f"API key {key.key_id} ({key.role.value}, {scope}); store it now, "
        "it cannot be shown again:",
        file=sys.stderr,
    )
    print(secret)  # noqa: T201
    return 0


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    """Print one line per key."""
    from api.keys import KeyStore  # noqa: PLC0415

    with KeyStore(settings.registry()) as store:
        keys = store.list_keys(include_revoked=not args.active)
    rows = [("ID", "ROLE", "TENANTS", "CREATED", "REVOKED", "NAME")]
    rows.extend(
        (
            k.key_id,
            k.role.value,
            ",".join(sorted(k.tenants)) if k.tenants is not None else "*",
            k.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            k.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ") if k.revoked_at else "-",
            k.name,
        )
        for k in keys
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())  # noqa: T201
    return 0


def run_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Revoke a key."""
    from api.keys import KeyStore, UnknownKey  # noqa: PLC0415

    try:
        with KeyStore(settings.registry()) as store:
            key = store.revoke(args.key_id)
    except UnknownKey as exc:
        print(f"lantaarn: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    assert key.revoked_at is not None
    print(f"revoked {key.key_id} at {key.revoked_at:%Y-%m-%dT%H:%M:%SZ}")  # noqa: T201
    return 0
