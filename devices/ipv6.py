"""IPv6 rules: a device address is global unicast or unique-local, inside a tenant prefix."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from devices.errors import InvalidDevice

_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
DOCUMENTATION_PREFIX = ipaddress.IPv6Network("2001:db8::/32")


def parse_prefix(text: str) -> ipaddress.IPv6Network:
    """An IPv6 prefix such as `2001:db8:363::/48`; host bits must be zero."""
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidDevice(
            f"{text!r} is not an IPv6 prefix: {exc}", field="ipv6_prefixes"
        ) from None
    if not isinstance(network, ipaddress.IPv6Network):
        raise InvalidDevice(
            f"{text!r} is an IPv4 network, not an IPv6 prefix", field="ipv6_prefixes"
        )
    return network


def check_device_address(
    text: str, prefixes: Iterable[str], *, tenant: str | None = None
) -> ipaddress.IPv6Address:
    """The device address `text`, if it is global unicast or unique-local and inside a prefix.

    `tenant` (the prefixes' owner) only makes the messages clearer.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidDevice(f"{text!r} is not an IP address", field="ipv6_address") from None
    if not isinstance(address, ipaddress.IPv6Address):
        raise InvalidDevice(f"{text} is an IPv4 address; devices need IPv6", field="ipv6_address")
    if address not in _GLOBAL_UNICAST and address not in _UNIQUE_LOCAL:
        raise InvalidDevice(
            f"{address} is neither global unicast (2000::/3) nor unique-local (fc00::/7)",
            field="ipv6_address",
        )
    owner = f"tenant {tenant}" if tenant else "the tenant"
    nets = [parse_prefix(p) for p in prefixes]
    if not nets:
        raise InvalidDevice(
            f"{address} cannot be used: {owner} has no IPv6 prefixes", field="ipv6_address"
        )
    if not any(address in net for net in nets):
        names = ", ".join(str(n) for n in nets)
        raise InvalidDevice(
            f"{address} is outside the IPv6 prefixes of {owner} ({names})", field="ipv6_address"
        )
    return address
