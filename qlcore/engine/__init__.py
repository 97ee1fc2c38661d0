"""The engine: kernel, clocks, configuration and run modes.

The names below load on first use, so `qlcore status` and the other command-table commands start
without importing pandas and the backtest kernel.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qlcore.engine.backtest import BacktestEngine
    from qlcore.engine.config import BacktestConfig, ConfigError
    from qlcore.engine.kernel import Kernel, OrderError

__all__ = ["BacktestConfig", "BacktestEngine", "ConfigError", "Kernel", "OrderError"]

_HOME = {
    "BacktestEngine": "qlcore.engine.backtest",
    "BacktestConfig": "qlcore.engine.config",
    "ConfigError": "qlcore.engine.config",
    "Kernel": "qlcore.engine.kernel",
    "OrderError": "qlcore.engine.kernel",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'qlcore.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
