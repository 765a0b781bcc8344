"""`lantaarn commands`: give a device a command, list the audit trail, show one command."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime, timedelta

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `commands` and its subcommands."""
    del settings
    parser = commands.add_parser("commands", help="command devices and read the audit trail")
    actions = parser.add_subparsers(dest="action", required=True)

    send = actions.add_parser(
        "send",
        help="store a command for a device (the command service publishes it)",
        description="Arguments as name=value, the value read as JSON: level=40 on=true.",
    )
    send.add_argument("device_id", metavar="DEVICE_ID")
    send.add_argument("name", metavar="NAME", help="e.g. set_dim_level (see /v1/device-kinds)")
    send.add_argument("args", metavar="ARG=VALUE", nargs="*")
    send.add_argument("--deadline", type=int, default=300, help="seconds (default %(default)s)")
    send.set_defaults(run=_send)

    listing = actions.add_parser("list", help="commands, newest first")
    listing.add_argument("--device")
    listing.add_argument("--tenant")
    listing.add_argument("--state")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=_list)

    show = actions.add_parser("show", help="one command with each change of its state")
    show.add_argument("command_id", metavar="COMMAND_ID")
    show.set_defaults(run=_show)


def _fail(message: str) -> int:
    print(f"lantaarn: {message}", file=sys.stderr)  # noqa: T201
    return 2


def _send(settings: Settings, args: argparse.Namespace) -> int:
    from devices import NotFound, Registry  # noqa: PLC0415
    from devices.command_history import CommandStore, Issuer, NewCommand  # noqa: PLC0415
    from devices.commands_catalogue import command_problems  # noqa: PLC0415

    values: dict[str, object] = {}
    for item in args.args:
        name, sep, text = item.partition("=")
        if not sep or not name:
            return _fail(f"{item!r} is not ARG=VALUE")
        try:
            values[name] = json.loads(text)
        except json.JSONDecodeError:
            values[name] = text  # a bare word is a string
    if not 1 <= args.deadline <= 7 * 86400:
        return _fail("--deadline is 1 to 604800 seconds")
    url = settings.registry()
    with Registry(url) as registry:
        try:
            device = registry.device(args.device_id)
        except NotFound:
            return _fail(f"no device {args.device_id!r}")
    if device.retired:
        return _fail(f"device {args.device_id!r} is retired")
    if problems := command_problems(device.kind, args.name, values):
        return _fail("; ".join(str(p) for p in problems))
    now = datetime.now(UTC)
    new = NewCommand(
        device.tenant, device.device_id, args.name, values, now + timedelta(seconds=args.deadline)
    )
    # Whoever runs this command reaches the registry's database: an admin, named by login.
    issuer = Issuer(f"cli:{getpass.getuser()}"[:64], "admin")
    with CommandStore(url) as store:
        (made,), _ = store.create([new], issuer, now=now)
    print(made.id)  # noqa: T201
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from devices.command_history import CommandStore  # noqa: PLC0415

    with CommandStore(settings.registry()) as store:
        page = store.history(
            tenants=None if args.tenant is None else [args.tenant],
            device_id=args.device,
            state=args.state,
            limit=max(1, args.limit),
        )
    for c in page.items:
        given = c.created_at.strftime("%Y-%m-%d %H:%M:%S")
        line = f"{given}  {c.id}  {c.device_id}  {c.name} {json.dumps(c.args, sort_keys=True)}"
        print(f"{line}  {c.state}  {c.issuer.role} {c.issuer.key_id or ''}".rstrip())  # noqa: T201
    return 0


def _show(settings: Settings, args: argparse.Namespace) -> int:
    from devices import NotFound  # noqa: PLC0415
    from devices.command_history import CommandStore  # noqa: PLC0415

    with CommandStore(settings.registry()) as store:
        try:
            c = store.command(args.command_id)
        except NotFound:
            return _fail(f"no command {args.command_id!r}")
    print(f"{c.name} {json.dumps(c.args, sort_keys=True)} to {c.tenant}/{c.device_id}")  # noqa: T201
    print(f"given by {c.issuer.role} {c.issuer.key_id or ''}".rstrip())  # noqa: T201
    for event in c.events:
        when = event.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        print(f"  {when}  {event.state}  {event.detail or ''}".rstrip())  # noqa: T201
    return 0
