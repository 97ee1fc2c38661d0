"""Brokers: the `Broker` protocol, the simulated broker used by backtests and the durable paper venue."""

from qlcore.brokers.base import Broker, ExecutionReports
from qlcore.brokers.matching import FillModel
from qlcore.brokers.paper import DuplicateClientOrderId, PaperVenue, VenueFill, VenueOrderRecord
from qlcore.brokers.simulated import SimulatedBroker

__all__ = [
    "Broker",
    "DuplicateClientOrderId",
    "ExecutionReports",
    "FillModel",
    "PaperVenue",
    "SimulatedBroker",
    "VenueFill",
    "VenueOrderRecord",
]
