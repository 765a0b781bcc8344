"""Which devices a query reads, said so that no query grows with the number of devices.

A whole tenant (or several) is named by its `tenant` tag: one short condition, whatever the
fleet's size. A set of devices by id is a regular expression of alternatives, in chunks of at
most `CHUNK` ids, one statement each. Measured on InfluxDB 1.6: `device_id = $d0 OR ...` costs
time quadratic in the ids (1,000 ids 0.3 s, 3,000 ids 3.3 s), a regular expression of the same
ids grows linearly (1,000 ids 0.08 s, 10,000 ids 0.5 s).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from timeseries.schema import quote_ident

# Ids per statement: at most ~64 KB of InfluxQL at the longest device ids (63 characters).
CHUNK = 1000
_PLAIN = frozenset(string.ascii_letters + string.digits + "_")
_PUNCTUATION = frozenset(string.punctuation)


def _regex_literal(value: str) -> str:
    """`value` as an exact-match piece of an InfluxQL regular expression (RE2 syntax)."""
    out = []
    for ch in value:
        if ch in _PLAIN:
            out.append(ch)
        elif ch in _PUNCTUATION:
            # RE2 takes any punctuation escaped; InfluxQL reads `\/` as `/` inside /.../.
            out.append("\\" + ch)
        else:
            out.append(f"\\x{{{ord(ch):x}}}")
    return "".join(out)


def _string_literal(value: str) -> str:
    """`value` as an InfluxQL string literal."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def exactly_one_of(tag: str, values: Sequence[str]) -> str:
    """`"tag" =~ /^(?:a|b|...)$/`: the tag equals one of the values (`"tag" = 'a'` for one,
    which InfluxDB looks up in its index instead of matching every value of the tag)."""
    if len(values) == 1:
        return f"{quote_ident(tag)} = {_string_literal(values[0])}"
    alternatives = "|".join(_regex_literal(v) for v in values)
    return f"{quote_ident(tag)} =~ /^(?:{alternatives})$/"


@dataclass(frozen=True, slots=True)
class Selection:
    """All devices (both None), all devices of some tenants, or some devices by id.

    Devices by id win over tenants. An empty tuple selects nothing.
    """

    tenants: tuple[str, ...] | None = None
    device_ids: tuple[str, ...] | None = None

    @classmethod
    def of_tenants(cls, tenants: Iterable[str] | None) -> Selection:
        """Every device of these tenants (None: of every tenant)."""
        return cls(tenants=None if tenants is None else tuple(dict.fromkeys(tenants)))

    @classmethod
    def of_devices(cls, device_ids: Iterable[str]) -> Selection:
        """These devices."""
        return cls(device_ids=tuple(dict.fromkeys(device_ids)))

    @property
    def nothing(self) -> bool:
        """Whether no device is selected (callers answer without asking InfluxDB)."""
        if self.device_ids is not None:
            return not self.device_ids
        return self.tenants is not None and not self.tenants

    def conditions(self) -> list[str]:
        """WHERE conditions, ` AND ...` each, one per statement to run; `[""]` for every
        device, `[]` for none. Values are written into the text (as escaped regular
        expressions), so no bound parameters are needed."""
        if self.device_ids is not None:
            ids = self.device_ids
            return [
                f" AND {exactly_one_of('device_id', ids[at : at + CHUNK])}"
                for at in range(0, len(ids), CHUNK)
            ]
        if self.tenants is not None:
            return [f" AND {exactly_one_of('tenant', self.tenants)}"] if self.tenants else []
        return [""]
