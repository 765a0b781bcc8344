"""`lantaarn devices`: add, list, import, export and retire devices; add tenants; new logins."""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings

if TYPE_CHECKING:
    from devices import Device, Registry
    from devices.provisioning import Credentials


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `devices` and its subcommands."""
    devices = commands.add_parser("devices", help="manage the registry of tenants and devices")
    actions = devices.add_subparsers(dest="action", required=True)

    tenant = actions.add_parser("add-tenant", help="register a tenant (a municipality)")
    tenant.add_argument("code", help="CBS code, e.g. GM0363")
    tenant.add_argument("name", help="e.g. Amsterdam")
    tenant.add_argument(
        "--prefix", action="append", default=[], help="an IPv6 prefix of its devices (repeatable)"
    )
    tenant.set_defaults(run=_guarded(_add_tenant))

    one = actions.add_parser("add", help="register a device; prints its broker password once")
    one.add_argument("device_id", metavar="DEVICE_ID")
    one.add_argument("--tenant", required=True)
    one.add_argument("--kind", required=True, help="a device kind (see /v1/device-kinds)")
    one.add_argument("--name", required=True)
    one.add_argument("--lat", type=float, required=True, help="WGS84 latitude, degrees")
    one.add_argument("--lon", type=float, required=True, help="WGS84 longitude, degrees")
    one.add_argument("--extra-kind", action="append", default=[], help="a further sensor's kind")
    one.add_argument("--ipv6", help="its IPv6 address, inside a prefix of its tenant")
    one.add_argument("--interval", type=float, help="expected seconds between readings")
    one.add_argument("--firmware")
    one.add_argument("--installed-on", type=date.fromisoformat, help="YYYY-MM-DD")
    one.add_argument("--owner")
    one.add_argument("--observation-goal")
    one.add_argument("--legal-ground")
    one.add_argument("--personal-data", action="store_true", help="it processes personal data")
    one.add_argument("--active-until", type=date.fromisoformat, help="YYYY-MM-DD")
    one.set_defaults(run=_guarded(_add_device))

    listing = actions.add_parser("list", help="list devices (a table, CSV or GeoJSON)")
    _filters(listing)
    listing.add_argument("--format", choices=["table", "csv", "geojson"], default="table")
    listing.set_defaults(run=_guarded(_list))

    load = actions.add_parser("import", help="import a CSV or GeoJSON file: every row or none")
    load.add_argument("file", type=Path)
    load.add_argument("--format", choices=["csv", "geojson"], help="default: from the file name")
    load.add_argument(
        "--credentials",
        type=Path,
        help="issue broker logins and write them (deviceId,username,password) to this new file",
    )
    load.set_defaults(run=_guarded(_import))

    save = actions.add_parser("export", help="export devices as CSV or GeoJSON (CRS84)")
    save.add_argument("file", help="where to write; - for standard output")
    save.add_argument("--format", choices=["csv", "geojson"], help="default: from the file name")
    _filters(save)
    save.set_defaults(run=_guarded(_export))

    retire = actions.add_parser("retire", help="retire a device (it can no longer log in)")
    retire.add_argument("device_id", metavar="DEVICE_ID")
    # Retiring also revokes the device's certificates, if the deployment keeps an authority.
    retire.set_defaults(run=_guarded(_retire), pki_dir=settings.pki_dir())

    login = actions.add_parser("new-login", help="give a device a new broker password")
    login.add_argument("device_id", metavar="DEVICE_ID")
    login.set_defaults(run=_guarded(_new_login))


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    parser.add_argument("--kind", help="only this main kind")
    parser.add_argument("--status", choices=["active", "retired"], help="default both")
    parser.add_argument("--bbox", help="minLon,minLat,maxLon,maxLat in degrees")


Action = Callable[["Registry", argparse.Namespace], int]


def _guarded(action: Action) -> Callable[[Settings, argparse.Namespace], int]:
    """Open the registry, run `action`, and turn the domain's errors into a message and exit 1."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        from devices import DeviceError, Registry  # noqa: PLC0415

        try:
            with Registry(settings.registry()) as registry:
                return action(registry, args)
        except DeviceError as exc:
            problems = getattr(exc, "problems", ())
            if len(problems) > 1:
                sys.stderr.write(f"lantaarn: {len(problems)} problem(s), nothing changed:\n")
                sys.stderr.writelines(f"  {p}\n" for p in problems)
            else:
                sys.stderr.write(f"lantaarn: {exc}\n")
            return 1
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"lantaarn: {exc}\n")
            return 1

    return run


def _add_tenant(registry: Registry, args: argparse.Namespace) -> int:
    from devices import Tenant  # noqa: PLC0415

    tenant = registry.add_tenant(Tenant(args.code, args.name, tuple(args.prefix)))
    sys.stdout.write(f"tenant {tenant.code} ({tenant.name}) added\n")
    return 0


def _add_device(registry: Registry, args: argparse.Namespace) -> int:
    from devices import Device  # noqa: PLC0415
    from devices.provisioning import issue_credentials  # noqa: PLC0415

    device = Device(
        device_id=args.device_id,
        tenant=args.tenant,
        kind=args.kind,
        name=args.name,
        latitude=args.lat,
        longitude=args.lon,
        extra_kinds=tuple(args.extra_kind),
        ipv6_address=args.ipv6,
        interval_s=args.interval,
        firmware=args.firmware,
        installed_on=args.installed_on,
        owner=args.owner,
        observation_goal=args.observation_goal,
        legal_ground=args.legal_ground,
        personal_data=args.personal_data,
        active_until=args.active_until,
    )
    credentials = issue_credentials(device)
    registry.add_device(device, password_hash=credentials.password_hash)
    sys.stdout.write(f"device {device.device_id} added\n")
    _show_login(credentials)
    return 0


def _show_login(credentials: Credentials) -> None:
    sys.stdout.write(
        f"broker username: {credentials.username}\n"
        f"broker password: {credentials.password}\n"
        "(the password is shown only now; run `lantaarn broker-config` to let it in)\n"
    )


def _selection(registry: Registry, args: argparse.Namespace) -> list[Device]:
    from devices import BoundingBox  # noqa: PLC0415

    box = BoundingBox.parse(args.bbox) if args.bbox else None
    return registry.devices(tenants=args.tenant, kind=args.kind, status=args.status, bbox=box)


def _list(registry: Registry, args: argparse.Namespace) -> int:
    from devices.transfer import Format, export  # noqa: PLC0415

    found = _selection(registry, args)
    if args.format != "table":
        sys.stdout.write(export(found, Format(args.format)))
        return 0
    rows = [("DEVICE", "TENANT", "KIND", "STATUS", "LAT", "LON", "NAME")]
    rows += [
        (
            d.device_id,
            d.tenant,
            d.kind,
            "retired" if d.retired else "active",
            f"{d.latitude:.6f}",
            f"{d.longitude:.6f}",
            d.name,
        )
        for d in found
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, row[-1]]) + "\n")
    return 0


def _import(registry: Registry, args: argparse.Namespace) -> int:
    from devices.transfer import Format, import_devices  # noqa: PLC0415

    fmt = Format(args.format) if args.format else Format.of_path(args.file)
    if args.credentials is not None and args.credentials.exists():
        raise ValueError(f"{args.credentials} exists; name a new file for the broker passwords")
    text = args.file.read_text(encoding="utf-8-sig")
    result = import_devices(registry, text, fmt, issue_logins=args.credentials is not None)
    if args.credentials is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["deviceId", "username", "password"])
        writer.writerows((c.device_id, c.username, c.password) for c in result.credentials)
        # Created private from the start: the file holds the only copy of the passwords.
        descriptor = os.open(args.credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(buffer.getvalue())
    sys.stdout.write(f"imported {len(result.devices)} devices from {args.file}\n")
    if args.credentials is not None:
        sys.stdout.write(f"broker logins written to {args.credentials}\n")
    else:
        sys.stdout.write("no broker logins issued; use `devices new-login` or --credentials\n")
    return 0


def _export(registry: Registry, args: argparse.Namespace) -> int:
    from devices.transfer import Format, export  # noqa: PLC0415

    if args.format:
        fmt = Format(args.format)
    elif args.file == "-":
        raise ValueError("give --format when writing to standard output")
    else:
        fmt = Format.of_path(Path(args.file))
    found = _selection(registry, args)
    text = export(found, fmt)
    if args.file == "-":
        sys.stdout.write(text)
    else:
        Path(args.file).write_text(text, encoding="utf-8")
        sys.stdout.write(f"exported {len(found)} devices to {args.file}\n")
    return 0


def _retire(registry: Registry, args: argparse.Namespace) -> int:
    from broker.pki import revoke_retired  # noqa: PLC0415

    device = registry.retire(args.device_id)
    assert device.retired_at is not None
    crl = revoke_retired(args.pki_dir, f"{device.tenant}/{device.device_id}")
    if crl is not None:
        sys.stdout.write(f"its certificates are revoked in {crl}; reload the broker to apply it\n")
    sys.stdout.write(
        f"device {device.device_id} retired at {device.retired_at.isoformat()}; "
        "run `lantaarn broker-config` to shut it out of the broker\n"
    )
    return 0


def _new_login(registry: Registry, args: argparse.Namespace) -> int:
    from devices.provisioning import provision  # noqa: PLC0415

    _show_login(provision(registry, args.device_id))
    return 0
