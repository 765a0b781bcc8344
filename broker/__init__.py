"""The MQTT side of lantaarn, as `timeseries` is the database side: sessions, broker
configuration and the deployment's certificate authority (`broker.pki`).

One session layer over the `mqtt5` codec that the ingest worker and the simulators share:
framing with an enforced Maximum Packet Size, keep-alive that notices a silent broker, CONNACK
and SUBACK checks, held acknowledgements, the receive maximum, reconnecting, and TLS.
"""

from broker.codec import (
    DISCONNECT,
    MAX_PACKET_SIZE,
    PINGREQ,
    SESSION_TAKEN_OVER,
    Framer,
    KeepAlive,
    connect_packet,
    disconnect_packet,
    puback_packets,
    reason_text,
    subscribe_packet,
    subscription_failures,
    unsubscribe_packet,
)
from broker.errors import (
    BrokerError,
    BrokerRefused,
    BrokerUnreachable,
    MalformedPacket,
    PacketTooLarge,
    ProtocolBroken,
)
from broker.fleet import Connection, Login, State, Transport, Will
from broker.session import BrokerConfig, Delivery, Subscriber, SubscriberProtocol
from broker.tls import client_context

__all__ = [
    "DISCONNECT",
    "MAX_PACKET_SIZE",
    "PINGREQ",
    "SESSION_TAKEN_OVER",
    "BrokerConfig",
    "BrokerError",
    "BrokerRefused",
    "BrokerUnreachable",
    "Connection",
    "Delivery",
    "Framer",
    "KeepAlive",
    "Login",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolBroken",
    "State",
    "Subscriber",
    "SubscriberProtocol",
    "Transport",
    "Will",
    "client_context",
    "connect_packet",
    "disconnect_packet",
    "puback_packets",
    "reason_text",
    "subscribe_packet",
    "subscription_failures",
    "unsubscribe_packet",
]
