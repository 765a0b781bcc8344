"""Clock skew read from HTTP `Date` headers (RFC 9110: the server's clock, whole seconds)."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

from lantaarn.doctor.findings import Finding, Status

# A Date header has whole seconds: below this the skew cannot be told from rounding.
RESOLUTION_S = 1.0
# Beyond this a clock is wrong enough to misfile readings (ingest stamps readings sent without
# a time, and decides with its clock when a window is closed): data at risk.
FAIL_SKEW_S = 30.0


def skew_from_date(date_header: str | None, sent_s: float, answered_s: float) -> float | None:
    """Seconds the server's clock is ahead of ours (negative: behind); None without a Date.

    The header is taken as stamped halfway through the request; it is truncated to the
    second, so half a second is added back.
    """
    if not date_header:
        return None
    try:
        stamped = parsedate_to_datetime(date_header).timestamp() + 0.5
    except (TypeError, ValueError):
        return None
    return stamped - (sent_s + answered_s) / 2


def skew_finding(what: str, skew_s: float | None, limit_s: float) -> Finding:
    """The finding for one clock compared with this machine's."""
    check = f"clock: {what}"
    if skew_s is None:
        return Finding(check, Status.INFO, "sends no Date header: its clock cannot be read")
    fix = "run NTP (systemd-timesyncd or chrony) on both machines: `timedatectl status`"
    text = f"{skew_s:+.1f} s against this machine (±{RESOLUTION_S / 2 + 0.1:.1f} s)"
    if abs(skew_s) > max(FAIL_SKEW_S, limit_s):
        return Finding(check, Status.FAIL, text, fix)
    if abs(skew_s) > max(limit_s, RESOLUTION_S):
        return Finding(check, Status.WARN, text, fix)
    return Finding(check, Status.OK, text)


def now() -> float:
    """This machine's clock, seconds since the epoch."""
    return time.time()
