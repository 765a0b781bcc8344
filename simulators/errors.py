"""The simulators' errors: whether the broker can be reached, and whether it let us in."""

from __future__ import annotations


class SimulatorError(Exception):
    """Something kept a simulation from publishing."""

    retryable: bool = False


class BrokerUnreachable(SimulatorError):
    """No connection to the broker, or it was lost; trying again later may help."""

    retryable = True


class BrokerRefused(SimulatorError):
    """The broker refused the connection (bad credentials, not authorised, bad client id)."""

    def __init__(self, message: str, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        # 0x89 server busy, 0x88 server unavailable, 0x97 quota: those pass with time.
        self.retryable = reason_code in (0x88, 0x89, 0x97, 0x9F)


class ProtocolBroken(SimulatorError):
    """The broker sent something we cannot parse, or closed the session on us."""
