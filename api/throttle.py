"""Slowing down key guessing: a token bucket of failed authentications per client address.

Each address may fail `burst` times at once and regains one attempt every `refill_s` seconds.
An address whose bucket is empty may not present any credential until it has regained one
(429 with Retry-After): not even a right one, or the answer would tell a guesser which guess was
right. Other addresses are not affected, so a guesser cannot lock a key's holder out from
elsewhere. An IPv6 client counts by its /64, the block one host or household usually has.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# Addresses remembered at most; beyond, the longest-untouched bucket is forgotten first.
MAX_ADDRESSES = 65_536


def client_group(host: str | None) -> str:
    """The group a client address counts in: an IPv4 address, an IPv6 /64, or the text as is."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a Unix socket path or a name: count it by itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TooManyFailures(Exception):
    """The address has no attempt left; `retry_after_s` whole seconds until it has one."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed authentications; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class FailedLogins:
    """Token buckets of authentication attempts per client group (single event loop only)."""

    def __init__(
        self, burst: int, refill_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if burst < 1 or refill_s <= 0:
            raise ValueError("burst must be at least 1 and refill_s positive")
        self.burst = burst
        self.refill_s = refill_s
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, group: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(group)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[group] = bucket
            while len(self._buckets) > MAX_ADDRESSES:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) / self.refill_s)
            bucket.at = now
            self._buckets.move_to_end(group)
        return bucket

    def attempt(self, group: str) -> None:
        """Take one attempt for `group`, or raise TooManyFailures when none is left.

        Taking it before the check (not after a failure) keeps parallel guesses within the burst.
        """
        bucket = self._bucket(group)
        if bucket.tokens < 1:
            raise TooManyFailures(max(1, math.ceil((1 - bucket.tokens) * self.refill_s)))
        bucket.tokens -= 1

    def succeeded(self, group: str) -> None:
        """Give back the attempt of a check that succeeded: only failures count."""
        bucket = self._buckets.get(group)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + 1)
            if bucket.tokens >= self.burst:
                del self._buckets[group]  # a full bucket is what an unknown address gets
