"""The simulators' errors: whether the broker can be reached, and whether it let us in.

The broker's errors are `broker.errors`' (the connections live there); they are named here too
so that simulator code has one place to import from.
"""

from __future__ import annotations

from broker.errors import BrokerRefused, BrokerUnreachable, ProtocolBroken


class SimulatorError(Exception):
    """Something kept a simulation from publishing."""

    retryable: bool = False


__all__ = ["BrokerRefused", "BrokerUnreachable", "ProtocolBroken", "SimulatorError"]
