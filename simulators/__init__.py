"""Simulated devices: a city fleet, believable signals, and publishing over MQTT."""

from simulators.fleet import CITIES, City, Fleet, make_fleet
from simulators.ledger import Ledger, Sent
from simulators.publisher import BrokerAddress, Publisher, run_fleet, telemetry_payload

__all__ = [
    "CITIES",
    "BrokerAddress",
    "City",
    "Fleet",
    "Ledger",
    "Publisher",
    "Sent",
    "make_fleet",
    "run_fleet",
    "telemetry_payload",
]
