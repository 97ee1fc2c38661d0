"""Pure values of the trading domain: ids, instruments, bars, orders, positions, money. No I/O."""

from qlcore.model.enums import AssetClass, OrderSide, OrderStatus, OrderType, TimeInForce
from qlcore.model.ids import ClientOrderId, StrategyId, Symbol, TradeId
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar, Quote, Tick
from qlcore.model.money import ZERO, to_decimal

__all__ = [
    "ZERO",
    "AssetClass",
    "Bar",
    "ClientOrderId",
    "Instrument",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "Quote",
    "StrategyId",
    "Symbol",
    "Tick",
    "TimeInForce",
    "TradeId",
    "to_decimal",
]
