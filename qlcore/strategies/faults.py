"""What the strategy manager does when a strategy's own code goes wrong.

A hook that raises (`on_start`, `on_bar`, `on_fill`, `on_warmup`, `save_state`), or an `on_bar` that
runs over the per-bar time budget, moves that strategy alone to FAILED (see
`qlcore.strategies.manager.TRANSITIONS`); the others go on. `FaultPolicy` is the configuration;
`Fault` is what happened, as recorded in the `StrategyFailed` event's details.

The budget is measured with a monotonic clock around each `on_bar` call and checked when the call
returns: a hook that never returns is not caught by it.
"""
from __future__ import annotations

import json
import math
import traceback
from dataclasses import dataclass

from qlcore.store.scrub import scrubber

__all__ = ["HOOKS", "Fault", "FaultPolicy"]

# the hooks whose errors fail a strategy (load_state is not among them: a saved state it cannot
# read is data gone stale, and the strategy starts afresh from `on_start`, with an alert)
HOOKS = ("on_start", "on_bar", "on_fill", "on_warmup", "save_state")


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    """How strategy faults are handled.

    Parameters
    ----------
    bar_budget_s
        Longest one `on_bar` call may take, in seconds of the manager's monotonic clock; None: no
        budget. A call that takes longer fails the strategy after it returns.
    flatten_on_failure
        Also send market orders that close a failed strategy's positions (its open orders are
        cancelled in any case).
    """

    bar_budget_s: float | None = None
    flatten_on_failure: bool = False

    def __post_init__(self) -> None:
        budget = self.bar_budget_s
        if budget is not None and (isinstance(budget, bool) or not math.isfinite(budget) or budget < 0):
            raise ValueError(f"strategy bar budget: expected seconds >= 0 or none, got {budget!r}")


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a strategy failed: the hook, the error (None when over budget) and the time it took."""

    hook: str
    error: str
    traceback: str = ""
    elapsed_s: float | None = None
    budget_s: float | None = None

    @classmethod
    def of(cls, hook: str, exc: BaseException) -> Fault:
        # stored in the strategy's StrategyFailed event, its alert and the audit log: without secrets
        clean = scrubber()
        text = clean.text("".join(traceback.format_exception(exc)))
        return cls(hook, clean.text(f"{type(exc).__name__}: {exc}"), text)

    @classmethod
    def over_budget(cls, elapsed_s: float, budget_s: float) -> Fault:
        return cls("on_bar", f"on_bar took {elapsed_s:.6f} s, over its budget of {budget_s:g} s",
                   elapsed_s=elapsed_s, budget_s=budget_s)

    @classmethod
    def from_details(cls, details: str) -> Fault:
        """Read back what `details` wrote (a `StrategyFailed` event's details)."""
        try:
            body = json.loads(details)
            return cls(body["hook"], body["error"], body.get("traceback", ""), body.get("elapsed_s"), body.get("budget_s"))
        except (ValueError, KeyError, TypeError):
            return cls("unknown hook", details)

    def describe(self) -> str:
        return f"{self.hook}: {self.error}"

    def details(self, canceled: list[str], flatten_orders: list[str]) -> str:
        """The `StrategyFailed` event's details (canonical JSON)."""
        body: dict[str, object] = {"hook": self.hook, "error": self.error, "traceback": self.traceback, "canceled": canceled,
                "flatten_orders": flatten_orders}
        if self.budget_s is not None:
            body.update(elapsed_s=self.elapsed_s, budget_s=self.budget_s)
        return json.dumps(body, sort_keys=True)
