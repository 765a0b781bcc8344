"""A device connection reading whatever a broker sends: packets or refusals, never a crash."""

from __future__ import annotations

import contextlib
import socket

import mqtt5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import BrokerError
from broker.fleet import Connection, Login, State

PANIC_NOISE = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
ANSWERS = (
    mqtt5.ConnAckPacket(receive_max=7, server_keep_alive=9).write()
    + mqtt5.PubAckPacket(1).write()
    + mqtt5.PubAckPacket(2, reason_code=mqtt5.PubAckReasonCode.NOT_AUTHORIZED).write()
    + mqtt5.PingRespPacket().write()
)


def fed(chunks: list[bytes]) -> Connection:
    """A connection whose broker sent `chunks`, one socket read each, read as they came."""
    connection = Connection("::1", 1, Login("reader"))
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection.sock = ours
    connection.state = State.CONNECTING
    connection.inflight = {1: b"p1", 2: b"p2"}
    try:
        for chunk in chunks:
            if chunk:
                theirs.sendall(chunk)
                connection.read()
    finally:
        theirs.close()
        ours.close()
        connection.sock = None
    return connection


def test_answers_split_at_every_byte_are_read_the_same() -> None:
    for cut in range(len(ANSWERS) + 1):
        connection = fed([ANSWERS[:cut], ANSWERS[cut:]])
        assert connection.connected
        assert connection.window == 7
        assert connection.acked == 2
        assert connection.inflight == {}
        assert connection.refused == {0x87: 1}


@pytest.mark.slow
@PANIC_NOISE
@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=30),
            st.sampled_from([ANSWERS[:n] for n in range(len(ANSWERS))]),
            st.builds(
                lambda head, body: bytes([head, len(body)]) + body,
                st.sampled_from([0x20, 0x40, 0xD0, 0xE0]),
                st.binary(max_size=12),
            ),
        ),
        max_size=5,
    )
)
def test_arbitrary_bytes_raise_nothing_but_our_errors(chunks: list[bytes]) -> None:
    with contextlib.suppress(BrokerError):
        fed(chunks)
