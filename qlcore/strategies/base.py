"""The `Strategy` base class: parameters, lifecycle hooks and order helpers.

A strategy sees bars through `on_bar` and its own fills through `on_fill`; it acts only through the
helpers here, which go to the kernel (and so through validation and the risk hook). The same code
runs in backtest, paper and live mode.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from qlcore.events.types import OrderFilled
from qlcore.model.enums import OrderSide, OrderType, TimeInForce
from qlcore.model.market import Bar
from qlcore.model.money import ZERO, to_decimal

if TYPE_CHECKING:
    import numpy as np

    from qlcore.engine.kernel import Kernel
    from qlcore.model.orders import Order


class UnknownParameterError(ValueError):
    """A parameter the strategy does not declare."""


class InvalidParameterError(ValueError):
    """A declared parameter with a value of the wrong type or out of range."""


_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True, slots=True)
class Param:
    """A declared strategy parameter."""

    default: Any
    type: Callable[[Any], Any]
    help: str = ""
    min: Any = None
    max: Any = None

    def convert(self, strategy: str, name: str, value: Any) -> Any:
        converted: Any
        try:
            if self.type is bool and isinstance(value, str):
                converted = _BOOL[value.strip().lower()]
            elif self.type is Decimal:
                converted = to_decimal(value)
            elif self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError("not a whole number")
            else:
                converted = self.type(value)
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
            tname = getattr(self.type, "__name__", str(self.type))
            raise InvalidParameterError(
                f"{strategy}: parameter {name}={value!r} is not a valid {tname} ({exc})"
            ) from None
        if self.min is not None and converted < self.min:
            raise InvalidParameterError(f"{strategy}: parameter {name}={converted} is below its minimum {self.min}")
        if self.max is not None and converted > self.max:
            raise InvalidParameterError(f"{strategy}: parameter {name}={converted} is above its maximum {self.max}")
        return converted


class Strategy:
    """Base class. Subclasses set `name`, declare `params`, and override the hooks they need."""

    name: ClassVar[str] = "strategy"
    params: ClassVar[dict[str, Param]] = {}
    description: ClassVar[str] = ""
    if TYPE_CHECKING:
        # Optional research form, a classmethod ``(close, **params) -> (entries, exits)``; only some
        # strategies define it (qlcore.research.inputs.has_vectorized_form checks at run time).
        vectorized_signals: ClassVar[Callable[..., tuple[np.ndarray, np.ndarray]]]

    def __init__(self, *, strategy_id: str | None = None, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            valid = ", ".join(f"{k} (default {p.default})" for k, p in self.params.items()) or "none"
            raise UnknownParameterError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; valid parameters: {valid}"
            )
        values = {k: p.default for k, p in self.params.items()}
        for key, value in params.items():
            values[key] = self.params[key].convert(self.name, key, value)
        self.param_values: dict[str, Any] = values
        for key, value in values.items():
            setattr(self, key, value)
        self.strategy_id = strategy_id or self.name
        self.symbols: tuple[str, ...] = ()
        self._kernel: Kernel | None = None
        self.validate()

    def validate(self) -> None:
        """Check relations between parameters; raise `InvalidParameterError`."""

    # --- wiring --------------------------------------------------------------------------------
    def bind(self, kernel: Kernel, symbols: tuple[str, ...]) -> None:
        self._kernel = kernel
        self.symbols = symbols

    @property
    def kernel(self) -> Kernel:
        if self._kernel is None:
            raise RuntimeError(f"strategy {self.strategy_id} is not attached to an engine")
        return self._kernel

    @property
    def now(self) -> int:
        return self.kernel.clock.now

    # --- hooks ---------------------------------------------------------------------------------
    def on_start(self) -> None: ...

    def on_bar(self, bar: Bar) -> None: ...

    def on_fill(self, fill: OrderFilled) -> None: ...

    def on_stop(self) -> None: ...

    # --- restart -------------------------------------------------------------------------------
    def warmup_bars(self) -> int:
        """How many bars per symbol `on_warmup` needs to bring the indicators back after a restart
        (0: the strategy keeps no history, or starts cold)."""
        return 0

    def on_warmup(self, bar: Bar) -> None:
        """A bar from before a restart, oldest first, after `on_start` (and `load_state`): update
        indicators only, never trade (the orders of that time are already in the log)."""

    def save_state(self) -> dict[str, Any] | None:
        """State beyond indicators that must survive a restart (a counter, a cadence), as JSON values;
        None (the default): nothing to keep. A paper or live engine saves it every few seconds and at
        a clean stop."""
        return None

    def load_state(self, state: dict[str, Any]) -> None:
        """After a restart, after `on_start`: `state` as `save_state` returned it. The bars seen
        between that save and the restart follow through `on_warmup` (after any `warmup_bars`
        history), so a strategy that counts bars counts only those newer than its state. Read all of
        `state` before changing anything: on an error the strategy goes on as `on_start` left it."""

    # --- reading state -------------------------------------------------------------------------
    def position(self, symbol: str | None = None) -> Decimal:
        return self.kernel.state.position(self.strategy_id, symbol or self.symbols[0])

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self.kernel.state.open_orders(self.strategy_id, symbol)

    def working_order(self, symbol: str | None = None) -> str | None:
        """The id of the newest open order in `symbol`, if any (what `on_start` picks up after a restart)."""
        orders = self.open_orders(symbol)
        return orders[-1].order_id if orders else None

    # --- acting --------------------------------------------------------------------------------
    def order(
        self,
        side: OrderSide,
        quantity: Decimal | int | float | str,
        symbol: str | None = None,
        *,
        limit: Decimal | float | str | None = None,
        stop: Decimal | float | str | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        tags: str = "",
    ) -> str:
        if limit is not None and stop is not None:
            order_type = OrderType.STOP_LIMIT
        elif limit is not None:
            order_type = OrderType.LIMIT
        elif stop is not None:
            order_type = OrderType.STOP
        else:
            order_type = OrderType.MARKET
        return self.kernel.submit_order(
            self.strategy_id, symbol or self.symbols[0], side, quantity, order_type, limit, stop, tif, tags
        )

    def buy(self, quantity: Decimal | int | float | str, symbol: str | None = None, **kw: Any) -> str:
        return self.order(OrderSide.BUY, quantity, symbol, **kw)

    def sell(self, quantity: Decimal | int | float | str, symbol: str | None = None, **kw: Any) -> str:
        return self.order(OrderSide.SELL, quantity, symbol, **kw)

    def target_position(self, target: Decimal | int | float | str, symbol: str | None = None, **kw: Any) -> str | None:
        """Order the difference between the current position and `target`; None if already there."""
        delta = to_decimal(target) - self.position(symbol)
        if not delta:
            return None
        side = OrderSide.BUY if delta > ZERO else OrderSide.SELL
        return self.order(side, abs(delta), symbol, **kw)

    def close(self, symbol: str | None = None, **kw: Any) -> str | None:
        return self.target_position(ZERO, symbol, **kw)

    def cancel(self, order_id: str) -> None:
        self.kernel.cancel_order(order_id)

    def cancel_all(self, symbol: str | None = None) -> int:
        orders = self.open_orders(symbol)
        for o in orders:
            self.kernel.cancel_order(o.order_id)
        return len(orders)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.param_values.items())
        return f"{type(self).__name__}({self.strategy_id}: {params})"


def describe_params(cls: type[Strategy]) -> Mapping[str, Param]:
    return dict(cls.params)
