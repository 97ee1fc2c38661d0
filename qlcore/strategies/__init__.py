"""Strategies: the base class, incremental indicators, built-ins and the registry."""

from qlcore.strategies.base import InvalidParameterError, Param, Strategy, UnknownParameterError
from qlcore.strategies.registry import (
    BUILTINS,
    StrategyNotAllowedError,
    StrategyPlaces,
    UnknownStrategyError,
    create_strategy,
    strategy_class,
)

__all__ = [
    "BUILTINS",
    "InvalidParameterError",
    "Param",
    "Strategy",
    "StrategyNotAllowedError",
    "StrategyPlaces",
    "UnknownParameterError",
    "UnknownStrategyError",
    "create_strategy",
    "strategy_class",
]
