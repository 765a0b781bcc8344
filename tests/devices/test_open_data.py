"""Open-data publications in the registry (SQLite and PostgreSQL) and the openness rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from devices import Device, InvalidDevice, NotFound, Registry
from devices.opendata import Licence, Publication, is_open, personal


def _device(device_id: str, kind: str, tenant: str = "GM0363", **changes: object) -> Device:
    device = Device(device_id, tenant, kind, f"{kind} {device_id}", 52.37, 4.89)
    return replace(device, **changes)  # type: ignore[arg-type]


@pytest.fixture
def stocked(registry: Registry) -> Registry:
    """Amsterdam: two noise meters (one flagged personal), a lamppost, a traffic counter;
    Utrecht: a noise meter."""
    registry.add_devices(
        [
            _device("ams-noise-1", "noise"),
            _device("ams-noise-2", "noise", personal_data=True),
            _device("ams-lamp-1", "lamppost"),
            _device("ams-count-1", "traffic_counter"),
            _device("utr-noise-1", "noise", tenant="GM0344"),
        ]
    )
    return registry


def test_a_publication_is_stored_replaced_and_withdrawn(stocked: Registry) -> None:
    assert stocked.publication("GM0363") is None
    before = stocked.revision()
    stored = stocked.publish(
        Publication("GM0363", Licence.CC_BY, " Gemeente Amsterdam ", ("noise", "noise"),
                    ("ams-lamp-1",))
    )  # fmt: skip
    assert stored.attribution == "Gemeente Amsterdam"
    assert stored.kinds == ("noise",)
    assert stocked.revision() > before  # readers that cache by revision see the change
    assert stocked.publication("GM0363") == stored
    assert stocked.publications() == [stored]
    assert stocked.publications(["GM0344"]) == []
    again = stocked.publish(Publication("GM0363", Licence.CC0, "Amsterdam", ("water_level",)))
    assert stocked.publication("GM0363") == again
    assert stocked.withdraw("GM0363")
    assert not stocked.withdraw("GM0363")
    assert stocked.publication("GM0363") is None


def test_personal_data_and_foreign_devices_are_refused_all_at_once(stocked: Registry) -> None:
    with pytest.raises(InvalidDevice) as caught:
        stocked.publish(
            Publication(
                "GM0363",
                Licence.CC_BY,
                "",
                ("traffic_counter", "spaceship"),
                ("ams-noise-2", "utr-noise-1", "nope"),
            )
        )
    reasons = [str(p) for p in caught.value.problems]
    assert len(reasons) == 6, reasons
    assert any("traffic_counter devices record personal data" in r for r in reasons)
    assert any("'ams-noise-2' records personal data" in r for r in reasons)
    assert any("no device 'utr-noise-1'" in r for r in reasons)
    assert stocked.publication("GM0363") is None
    with pytest.raises(NotFound):
        stocked.publish(Publication("GM9999", Licence.CC0, "Nobody"))


def test_open_means_published_and_not_personal(stocked: Registry) -> None:
    stocked.publish(Publication("GM0363", Licence.CC0, "Amsterdam", ("noise",), ("ams-lamp-1",)))
    publications = {p.tenant: p for p in stocked.publications()}
    by_id = {d.device_id: d for d in stocked.devices()}
    opened = {i for i, d in by_id.items() if is_open(d, publications)}
    assert opened == {"ams-noise-1", "ams-lamp-1"}
    # Flagged personal after publishing: it drops out at once, the publication stays.
    flagged = stocked.update("ams-noise-1", {"personal_data": True})
    assert not is_open(flagged, publications)
    # A personal extra kind makes the device personal too.
    assert personal(_device("x", "noise", extra_kinds=("traffic_counter",)))
