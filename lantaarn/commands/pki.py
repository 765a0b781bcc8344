"""`lantaarn pki`: the deployment's certificate authority, for the broker and for devices."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lantaarn.commands import Subcommands
from lantaarn.settings import Settings

if TYPE_CHECKING:
    from broker.pki import Authority


def add(commands: Subcommands, settings: Settings) -> None:  # type: ignore[type-arg]
    """Add `pki` and its subcommands."""
    pki = commands.add_parser(
        "pki", help="the certificate authority: broker certificate, device certificates, CRL"
    )
    pki.add_argument(
        "--folder",
        type=Path,
        default=None,
        help=f"the authority's folder (default {settings.pki_dir()})",
    )
    actions = pki.add_subparsers(dest="action", required=True)

    init = actions.add_parser("init", help="create the authority (never overwrites one)")
    init.add_argument("--name", default="lantaarn device CA", help="the authority's common name")
    init.set_defaults(run=_guarded(_init, create=True))

    server = actions.add_parser("server", help="issue the broker's key and certificate")
    server.add_argument(
        "--dns", action="extend", nargs="+", default=[], metavar="NAME", help="DNS names"
    )
    server.add_argument(
        "--ip", action="extend", nargs="+", default=[], metavar="ADDR", help="IP addresses"
    )
    server.set_defaults(run=_guarded(_server))

    sign = actions.add_parser("sign", help="sign a device's certificate signing request")
    sign.add_argument("--device", required=True, metavar="ID", help="the device's id")
    sign.add_argument("--csr", required=True, type=Path, metavar="FILE", help="PEM or DER")
    sign.add_argument("--out", type=Path, metavar="FILE", help="default: standard output")
    sign.set_defaults(run=_guarded(_sign))

    revoke = actions.add_parser(
        "revoke", help="revoke every certificate of a device and rewrite the CRL"
    )
    revoke.add_argument("--device", required=True, metavar="ID", help="the device's id")
    revoke.set_defaults(run=_guarded(_revoke))

    crl = actions.add_parser(
        "crl", help="rewrite the CRL (revoking retired devices' certificates too)"
    )
    crl.set_defaults(run=_guarded(_crl))

    listing = actions.add_parser("list", help="show every certificate issued")
    listing.set_defaults(run=_guarded(_list))


Action = Callable[["Authority", Settings, argparse.Namespace], int]
Run = Callable[[Settings, argparse.Namespace], int]


def _guarded(action: Action, *, create: bool = False) -> Run:
    """Load the authority (or not, for `init`), run `action`; known failures exit 1."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        from broker.pki import Authority, PkiError  # noqa: PLC0415
        from devices import DeviceError  # noqa: PLC0415

        folder: Path = args.folder or settings.pki_dir()
        try:
            if create:
                authority = Authority.create(folder, name=args.name)
            else:
                authority = Authority.load(folder)
            return action(authority, settings, args)
        except (PkiError, DeviceError, OSError) as exc:
            sys.stderr.write(f"lantaarn: {exc}\n")
            return 1

    return run


def _init(authority: Authority, settings: Settings, args: argparse.Namespace) -> int:
    del settings, args
    sys.stdout.write(
        f"certificate authority created in {authority.folder}\n"
        f"  give devices and clients {authority.ca_file}; the broker's crlfile is "
        f"{authority.crl_file}\n"
    )
    return 0


def _server(authority: Authority, settings: Settings, args: argparse.Namespace) -> int:
    del settings
    cert, key = authority.issue_server(args.dns, args.ip)
    sys.stdout.write(f"broker certificate {cert}\nbroker key {key}\n")
    return 0


def _device_identity(settings: Settings, device_id: str, *, active: bool) -> str:
    """The identity of a registered device (`active`: refuse a retired one)."""
    from broker.pki import PkiError, device_identity  # noqa: PLC0415
    from devices import Registry  # noqa: PLC0415

    with Registry(settings.registry()) as registry:
        device = registry.device(device_id)
    if active and device.retired_at is not None:
        raise PkiError(f"device {device_id} is retired; it gets no certificate")
    return device_identity(device.tenant, device.device_id)


def _sign(authority: Authority, settings: Settings, args: argparse.Namespace) -> int:
    identity = _device_identity(settings, args.device, active=True)
    certificate = authority.sign_device_csr(args.csr.read_bytes(), identity)
    if args.out is None:
        sys.stdout.write(certificate.decode())
    else:
        args.out.write_bytes(certificate)
        sys.stderr.write(f"certificate of {identity} written to {args.out}\n")
    return 0


def _revoke(authority: Authority, settings: Settings, args: argparse.Namespace) -> int:
    identity = _device_identity(settings, args.device, active=False)
    authority.revoke(identity)
    crl = authority.write_crl()
    sys.stdout.write(
        f"certificates of {identity} revoked; {crl} rewritten (reload the broker to apply it)\n"
    )
    return 0


def _crl(authority: Authority, settings: Settings, args: argparse.Namespace) -> int:
    del args
    from broker.pki import InvalidIdentity, device_identity  # noqa: PLC0415
    from devices import Registry  # noqa: PLC0415

    issued = {c.identity for c in authority.issued()}
    retired = []
    with Registry(settings.registry()) as registry:
        for device in registry.devices(status="retired"):
            try:
                identity = device_identity(device.tenant, device.device_id)
            except InvalidIdentity:
                continue  # too long for a certificate, so never given one
            if identity in issued:
                retired.append(identity)
    crl = authority.write_crl(retired)
    revoked = sum(1 for c in authority.issued() if c.revoked_at is not None)
    sys.stdout.write(f"{crl} rewritten: {revoked} revoked certificate(s)\n")
    return 0


def _list(authority: Authority, settings: Settings, args: argparse.Namespace) -> int:
    del settings, args
    rows = [("SERIAL", "IDENTITY", "KIND", "NOT AFTER", "REVOKED AT")]
    for c in authority.issued():
        revoked = "" if c.revoked_at is None else c.revoked_at.isoformat()
        rows.append((f"{c.serial:x}", c.identity, c.kind, c.not_after.isoformat(), revoked))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
    return 0
