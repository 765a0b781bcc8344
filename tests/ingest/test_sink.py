"""The sink's times for rejections: one each, the same again when a message comes back."""

from __future__ import annotations

from ingest.decode import Decoded, Decoder, prepare
from ingest.sink import RejectionTimes
from tests.ingest.test_decode import AQ, NOW_NS, TOPIC


def rejections(payload: bytes, received_ns: int) -> Decoded:
    out = Decoded()
    Decoder(prepare([AQ])).decode(TOPIC, payload, received_ns, out)
    return out


def test_a_redelivered_message_gets_the_times_of_its_first_delivery() -> None:
    two_bad = b'{"metrics": {"pm25": -1, "no2": 9e9}}'
    other = b'{"metrics": {"pm25": -2}}'
    times = RejectionTimes()
    first = times.times(rejections(two_bad, NOW_NS).rejections)
    # Another message of the same socket read, then the first one again, a minute later.
    second = times.times(rejections(other, NOW_NS).rejections)
    again = times.times(rejections(two_bad, NOW_NS + 60 * 10**9).rejections)
    assert len({*first, *second}) == 3  # every rejection its own time
    assert again == first
