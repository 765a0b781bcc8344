"""The demo's dimming schedule: each tenant's lampposts get the common Dutch night profile."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from devices.schedule_store import LampGroup, ScheduleStore
from devices.schedules import Step

log = logging.getLogger(__name__)

NIGHT_PROFILE: Final = "Night profile"
# Full light from sunset, 40 % from 23:00, full again from 06:00 (dark mornings), off at sunrise.
NIGHT_STEPS: Final = (
    Step.parse("sunset", 100),
    Step.parse("23:00", 40),
    Step.parse("06:00", 100),
    Step.parse("sunrise", 0),
)


def seed_night_schedules(registry_url: str, tenants: Sequence[str]) -> int:
    """Give every tenant without a schedule the night profile, for all its lampposts; returns
    how many were made (none on a second run)."""
    made = 0
    with ScheduleStore(registry_url) as store:
        having = {s.tenant for s in store.schedules(list(tenants))}
        for tenant in tenants:
            if tenant not in having:
                store.create(tenant, NIGHT_PROFILE, NIGHT_STEPS, LampGroup())
                made += 1
    if made:
        log.info("gave %d tenant(s) the night profile for their lampposts", made)
    return made
