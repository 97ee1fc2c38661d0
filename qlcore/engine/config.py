"""Run configuration: explicit, frozen, and strict about unknown keys."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from qlcore.model.money import to_decimal


class ConfigError(ValueError):
    """An unknown key or a bad value in a configuration."""


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """Money, costs and storage of a backtest. `fee_bps=10` is backtrader's `commission=0.001`."""

    initial_cash: Decimal = Decimal(100_000)
    fee_bps: Decimal = Decimal(0)
    min_fee: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    batch_size: int = 1000

    def __post_init__(self) -> None:
        for f in ("initial_cash", "fee_bps", "min_fee", "slippage_bps"):
            try:
                value = to_decimal(getattr(self, f))
            except ValueError as exc:
                raise ConfigError(f"{f}: {exc}") from None
            if value < 0:
                raise ConfigError(f"{f}: must be >= 0, got {value}")
            object.__setattr__(self, f, value)
        if self.initial_cash <= 0:
            raise ConfigError(f"initial_cash: must be > 0, got {self.initial_cash}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BacktestConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, str | int]:
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Decimal) else v) for f in dataclasses.fields(self)}
