"""Which commands jump the queue, and what a command that jumped it supersedes.

The engine takes its commands in lanes, each in id order: the kill switch (`halt`) first, then the
other protective commands (`order.cancel`, `flatten`, `strategy.pause`, `strategy.stop`), then
everything else (orders, deployments, resumes, limit changes). The engine gives protective commands
a turn of their own (`PRIORITY_LANES`) when there are any: however long the backlog of orders, a
halt is taken at the engine's next turn and completed at its end, and the orders queued before it
are then denied by the HALTED account.

Jumping the queue must not change what a sender meant: a protective command handled before a
command sent earlier has the last word. `Fences` remembers the protective commands handled and
refuses, as superseded, a command sent before one of them that would start or add trading in its
scope:

- a halt supersedes an earlier `resume_trading` (which would otherwise undo it);
- a pause or stop of a strategy supersedes earlier orders, deployments and resumes of that strategy;
- a flatten supersedes earlier orders in its scope (strategy, symbol, or the whole account).

Orders sent before a halt need no fence: the account stays HALTED until a `resume_trading` sent
later, which waits in the last lane behind them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

HALT = "halt"
PROTECTIVE = frozenset({"order.cancel", "flatten", "strategy.pause", "strategy.stop"})
PRIORITY = frozenset({HALT}) | PROTECTIVE
# the lanes in the order they are taken; `None` is every other kind
PRIORITY_LANES: tuple[frozenset[str] | None, ...] = (frozenset({HALT}), PROTECTIVE)
LANES: tuple[frozenset[str] | None, ...] = (*PRIORITY_LANES, None)
# the kinds that set a fence when handled (a cancel names one existing order: nothing to supersede)
FENCING = frozenset({HALT, "flatten", "strategy.pause", "strategy.stop"})

_ACCOUNT = ("account",)


class Fences:
    """The protective commands handled so far, by scope: `record` each, ask `superseded` of the others."""

    def __init__(self) -> None:
        # scope -> (id, kind) of the latest protective command handled in it
        self._by_scope: dict[tuple[str | None, ...], tuple[int, str]] = {}

    def record(self, command_id: int, kind: str, payload: Mapping[str, Any]) -> None:
        """Remember a handled protective command (accepted or refused: its sender's word is the last either way)."""
        scope = _scope(kind, payload)
        if scope is None:
            return
        if command_id > self._by_scope.get(scope, (0, ""))[0]:
            self._by_scope[scope] = (command_id, kind)

    def record_all(self, commands: Iterable[Any]) -> None:
        """`record` each of `commands` (anything with `id`, `kind` and `payload`)."""
        for c in commands:
            self.record(c.id, c.kind, c.payload)

    def superseded(self, command_id: int, kind: str, payload: Mapping[str, Any]) -> str | None:
        """Why this command is superseded by a protective command sent after it and handled first; else None."""
        scopes: list[tuple[str | None, ...]] = []
        if kind == "resume_trading":
            scopes.append(_ACCOUNT)
        elif kind in ("order.submit", "strategy.deploy", "strategy.resume"):
            sid = payload.get("strategy_id")
            scopes.append(("strategy", sid))
            if kind == "order.submit":
                symbol = payload.get("symbol")
                scopes += [("flatten", s, y) for s in (None, sid) for y in (None, symbol)]
        for scope in scopes:
            fence = self._by_scope.get(scope)
            if fence is not None and fence[0] > command_id:
                return (f"superseded by command {fence[0]} ({fence[1]}{_describe(scope)}), sent after this one "
                        "and handled first")
        return None

    def __len__(self) -> int:
        return len(self._by_scope)


def _scope(kind: str, payload: Mapping[str, Any]) -> tuple[str | None, ...] | None:
    if kind == HALT:
        return _ACCOUNT
    if kind in ("strategy.pause", "strategy.stop"):
        return ("strategy", payload.get("strategy_id"))
    if kind == "flatten":
        return ("flatten", payload.get("strategy_id"), payload.get("symbol"))
    return None


def _describe(scope: tuple[str | None, ...]) -> str:
    if scope == _ACCOUNT:
        return " of the account"
    if scope[0] == "strategy":
        return f" of strategy {scope[1]}"
    what = " ".join(x for x in scope[1:] if x)
    return f" of {what}" if what else " of the account"


__all__ = ["FENCING", "HALT", "LANES", "PRIORITY", "PRIORITY_LANES", "PROTECTIVE", "Fences"]
