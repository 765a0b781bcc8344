"""Where a tenant's webhook may send: its name resolved and checked before every request, and
the request pinned to the address checked.

A tenant names the URL, the platform makes the request: without a check a tenant could make
the platform call its own InfluxDB, a cloud metadata service or anything else on the inside
(server-side request forgery). The API refuses internal IP literals and local names; here every
address the name resolves to must be public too (a name may resolve to 127.0.0.1, and change),
and the connection goes to the address checked, not to a second lookup's answer (DNS
rebinding): the URL carries the address, `Host` the name, TLS the name for SNI and for checking
the certificate. Redirects are never followed (httpx's default), so a public receiver cannot
send the request inward either.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from devices.alert_channels import internal_address


class AddressRefused(Exception):
    """The webhook's host is not one the platform may call (or cannot be resolved)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A request pinned to one checked address: its URL, headers and httpx extensions."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


async def pinned(url: str, *, allow_internal: bool) -> Target:
    """The request for `url` pinned to an address of its host (AddressRefused when the host
    resolves to an internal address and those are not allowed, or does not resolve)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise AddressRefused("the URL names no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as exc:
        raise AddressRefused(f"{host} does not resolve: {exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not addresses:
        raise AddressRefused(f"{host} does not resolve")
    inside = [a for a in addresses if internal_address(a)]
    if inside and not allow_internal:
        raise AddressRefused(f"{host} resolves to {inside[0]}, not a public address")
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    headers = {"Host": parts.netloc.rpartition("@")[2]}
    extensions: dict[str, Any] = {}
    if parts.scheme == "https":
        extensions["sni_hostname"] = host
    return Target(
        urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), headers, extensions
    )
