"""Strategies: the base class, incremental indicators, built-ins and the registry."""

from qlcore.strategies.base import InvalidParameterError, Param, Strategy, UnknownParameterError
from qlcore.strategies.registry import (
    BUILTINS,
    UnknownStrategyError,
    create_strategy,
    strategy_class,
)

__all__ = [
    "BUILTINS",
    "InvalidParameterError",
    "Param",
    "Strategy",
    "UnknownParameterError",
    "UnknownStrategyError",
    "create_strategy",
    "strategy_class",
]
