"""The engine: kernel, clocks, configuration and run modes."""

from qlcore.engine.backtest import BacktestEngine
from qlcore.engine.config import BacktestConfig, ConfigError
from qlcore.engine.kernel import Kernel, OrderError

__all__ = ["BacktestConfig", "BacktestEngine", "ConfigError", "Kernel", "OrderError"]
