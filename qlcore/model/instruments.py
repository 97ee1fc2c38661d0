"""Tradable instruments."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from qlcore.model.enums import AssetClass


@dataclass(frozen=True, slots=True)
class Instrument:
    """What can be traded, with the increments its prices and quantities must respect."""

    symbol: str
    asset_class: AssetClass = AssetClass.EQUITY
    currency: str = "USD"
    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal("1")

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValueError("instrument symbol must not be empty")
        if self.tick_size <= 0:
            raise ValueError(f"{self.symbol}: tick_size must be > 0, got {self.tick_size}")
        if self.lot_size <= 0:
            raise ValueError(f"{self.symbol}: lot_size must be > 0, got {self.lot_size}")

    def is_valid_price(self, price: Decimal) -> bool:
        return price > 0 and price % self.tick_size == 0

    def is_valid_quantity(self, quantity: Decimal) -> bool:
        return quantity > 0 and quantity % self.lot_size == 0


def equity(symbol: str) -> Instrument:
    """A US equity with cent ticks and single-share lots."""
    return Instrument(symbol)
