"""Brokers: the `Broker` protocol and the simulated broker used by backtests and paper trading."""

from qlcore.brokers.base import Broker, ExecutionReports
from qlcore.brokers.simulated import FillModel, SimulatedBroker

__all__ = ["Broker", "ExecutionReports", "FillModel", "SimulatedBroker"]
