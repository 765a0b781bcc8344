"""Simulated devices: a city fleet, believable signals, faults on purpose, and a load generator."""

from simulators.clock import SimClock
from simulators.engine import Links, Report, Simulation, device_connections
from simulators.errors import BrokerRefused, BrokerUnreachable, ProtocolBroken, SimulatorError
from simulators.faults import Fault, FaultRates
from simulators.fleet import CITIES, City, Fleet, make_fleet
from simulators.ledger import Ledger, Outcome, Rejected, Sent, TimeLimits
from simulators.publisher import BrokerAddress, Publisher, run_fleet, telemetry_payload
from simulators.sun import SunTimes, sun_times

__all__ = [
    "CITIES",
    "BrokerAddress",
    "BrokerRefused",
    "BrokerUnreachable",
    "City",
    "Fault",
    "FaultRates",
    "Fleet",
    "Ledger",
    "Links",
    "Outcome",
    "ProtocolBroken",
    "Publisher",
    "Rejected",
    "Report",
    "Sent",
    "SimClock",
    "Simulation",
    "SimulatorError",
    "SunTimes",
    "TimeLimits",
    "device_connections",
    "make_fleet",
    "run_fleet",
    "sun_times",
    "telemetry_payload",
]
