"""The broker package's errors: whether the broker can be reached, let us in, and spoke MQTT."""

from __future__ import annotations


class BrokerError(Exception):
    """Something went wrong between us and the MQTT broker."""

    retryable: bool = False


class BrokerUnreachable(BrokerError):
    """No connection to the broker, it was lost, or the broker went silent; retrying may help."""

    retryable = True


class BrokerRefused(BrokerError):
    """The broker turned us away (CONNACK, SUBACK or UNSUBACK with a failure reason)."""

    def __init__(self, message: str, reason_code: int = 0x80) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        # 0x88 server unavailable, 0x89 server busy, 0x97 quota, 0x9F rate: those pass with time.
        self.retryable = reason_code in (0x88, 0x89, 0x97, 0x9F)


class ProtocolBroken(BrokerError):
    """The peer sent something MQTT 5 does not allow; `reason_code` goes in our DISCONNECT."""

    retryable = True  # a new connection starts from a clean stream

    def __init__(self, message: str, reason_code: int = 0x81) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class MalformedPacket(ProtocolBroken):
    """Bytes that are not a valid MQTT 5 packet (DISCONNECT reason 0x81)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0x81)


class PacketTooLarge(ProtocolBroken):
    """A packet declared larger than the Maximum Packet Size we announced (reason 0x95)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0x95)
