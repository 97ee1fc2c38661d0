"""Typed identifiers. `NewType` keeps them free at run time and distinct for the type checker."""
from typing import NewType

ClientOrderId = NewType("ClientOrderId", str)
VenueOrderId = NewType("VenueOrderId", str)
StrategyId = NewType("StrategyId", str)
TradeId = NewType("TradeId", str)
Symbol = NewType("Symbol", str)
RunId = NewType("RunId", str)
