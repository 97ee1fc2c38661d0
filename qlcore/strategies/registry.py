"""Finding strategies by name (built-ins) or by `module:Class`."""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from qlcore.strategies.base import Strategy
from qlcore.strategies.mean_reversion import MeanReversion
from qlcore.strategies.rebalance import Rebalance
from qlcore.strategies.sma_cross import SmaCross

BUILTINS: dict[str, type[Strategy]] = {cls.name: cls for cls in (SmaCross, MeanReversion, Rebalance)}


class UnknownStrategyError(LookupError):
    """A strategy name that is neither built in nor an importable `module:Class`."""

    def __str__(self) -> str:  # KeyError-style quoting would hide the list
        return str(self.args[0])


def strategy_class(name: str) -> type[Strategy]:
    """The class for a built-in name or a `package.module:ClassName` reference."""
    if name in BUILTINS:
        return BUILTINS[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownStrategyError(f"cannot load strategy {name!r}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise UnknownStrategyError(f"{name!r} is not a Strategy subclass")
        return cls
    raise UnknownStrategyError(
        f"unknown strategy {name!r}; built-in strategies: {', '.join(sorted(BUILTINS))} "
        "(or give a 'package.module:ClassName')"
    )


def create_strategy(name: str, params: Mapping[str, Any] | None = None, *, strategy_id: str | None = None) -> Strategy:
    """Instantiate a strategy; string parameter values (from the CLI) are converted to their declared types."""
    return strategy_class(name)(strategy_id=strategy_id, **dict(params or {}))
