"""What the engine does with each command of the command table.

Every command ends accepted or refused with a reason; both are recorded as a `CommandCompleted`
event in the log (with the events the action produced) and in the command table. A handler refuses
by raising `Refused`; any other error from the domain (unknown strategy or parameter, invalid
lifecycle transition, unknown order) is a refusal too, with the error's own message. The engine
keeps running whatever a command says.

Protective commands jump the queue (`qlcore.control.priority`); each one handled is remembered in
`fences`, and a command sent before it that would start or add trading in its scope is refused as
superseded, so that jumping the queue never changes what the senders meant.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qlcore.control.commands import Command
from qlcore.control.identity import NOT_AUTHORISED
from qlcore.control.priority import FENCING, Fences
from qlcore.engine.approvals import check_job_deployment
from qlcore.engine.kernel import OrderError
from qlcore.engine.status import RUNNING
from qlcore.model.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from qlcore.model.money import to_decimal
from qlcore.risk.modes import OPERATOR_FLATTEN_TAG, ModeError, NotAuthorisedError
from qlcore.store.scrub import scrub
from qlcore.strategies.manager import InvalidStrategyTransition, StrategyState
from qlcore.strategies.registry import UnknownStrategyError

if TYPE_CHECKING:
    from qlcore.engine.service import EngineService

log = logging.getLogger("qlcore.engine")

# commands that create exposure wait for a passed reconciliation; the others (halt, cancel, pause…) never wait
_TRADING = frozenset({"strategy.deploy", "strategy.resume", "order.submit", "flatten"})


class Refused(Exception):
    """The command cannot be carried out; the message is the reason recorded."""


class CommandHandlers:
    def __init__(self, engine: EngineService) -> None:
        self.engine = engine
        self.fences = Fences()
        self._handlers: dict[str, Callable[[Command], str]] = {
            "strategy.deploy": self.deploy,
            "strategy.pause": self.pause,
            "strategy.resume": self.resume,
            "strategy.stop": self.stop,
            "order.submit": self.submit_order,
            "order.cancel": self.cancel_order,
            "flatten": self.flatten,
            "halt": self.halt,
            "resume_trading": self.resume_trading,
            "limits.set": self.set_limits,
        }

    def handle(self, command: Command) -> tuple[bool, str]:
        """Act on one command; return (accepted, reason or result) after recording the outcome.

        First the gatekeeper: a command whose credential does not prove its sender, or whose sender
        lacks the role (a job: the scope) its kind needs, is refused before anything else looks at it,
        and sets no fence."""
        engine = self.engine
        verdict = engine.gatekeeper.verify(command.kind, command.signed_payload(), command.user, command.target,
                                           command.credential)
        if verdict.reason is not None:
            reason = NOT_AUTHORISED + verdict.reason
            engine.complete(command, False, reason, signer=verdict.signer, proven=verdict.proven)
            return False, reason
        try:
            handler = self._handlers.get(command.kind)
            if handler is None:
                raise Refused(f"unknown command kind {command.kind!r}; known: {', '.join(sorted(self._handlers))}")
            superseded = self.fences.superseded(command.id, command.kind, command.payload)
            if superseded is not None:
                raise Refused(superseded)
            if command.kind in _TRADING and engine.state != RUNNING:
                raise Refused(f"trading is blocked: engine state is {engine.state} (reconciliation has not passed)")
            result = handler(command)
            accepted, reason = True, result
        except (
            Refused, OrderError, InvalidStrategyTransition, UnknownStrategyError, NotAuthorisedError, ModeError,
            KeyError, ValueError, TypeError,
        ) as exc:
            accepted, reason = False, _message(exc)
        except Exception as exc:  # a bug must not stop the engine; it is recorded and alerted
            log.exception("command %s (%s) failed", command.id, command.kind)
            accepted, reason = False, scrub(f"internal error: {type(exc).__name__}: {exc}")
            engine.alert("error", "commands", f"command {command.id} ({command.kind}) failed: {reason}")
        if command.kind in FENCING:
            self.fences.record(command.id, command.kind, command.payload)
        engine.complete(command, accepted, reason, signer=verdict.signer)
        return accepted, reason

    # --- strategies -------------------------------------------------------------------------------
    def deploy(self, c: Command) -> str:
        p = c.payload
        engine = self.engine
        symbols = p.get("symbols") or list(engine.config.symbols)
        # a job's deployment: only under its approval, within the approved capital and limits
        capital, limits = check_job_deployment(engine.db, p, to_decimal(p.get("capital") or engine.config.default_capital),
                                               p.get("limits") or {}, engine.config.resolved_users_file)
        strategy = engine.manager.deploy(
            p["strategy"],
            p.get("params") or {},
            symbols=symbols,
            allocation=capital,
            limits=limits or None,
            strategy_id=p["strategy_id"],
            actor=c.user,
        )
        done = f"deployed {strategy.strategy_id} ({p['strategy']}) on {', '.join(symbols)}"
        fault = engine.manager.fault(strategy.strategy_id)
        if fault is not None:  # recorded as deployed, then failed: say so
            done += f", but it FAILED in {fault.describe()}"
        return done

    def pause(self, c: Command) -> str:
        sid = c.payload["strategy_id"]
        cancel = bool(c.payload.get("cancel_open_orders", False))
        self.engine.manager.pause(sid, cancel_open_orders=cancel, actor=c.user)
        return f"paused {sid}" + (" and cancelled its open orders" if cancel else "")

    def resume(self, c: Command) -> str:
        sid = c.payload["strategy_id"]
        self.engine.manager.resume(sid, actor=c.user)
        mode = self.engine.strategy_mode(sid)
        if mode != "ACTIVE":  # it gets bars again, but its orders meet its mode (and any runaway disable)
            return (f"resumed {sid}; its trading mode is {mode}: an authorised user lifts that with "
                    f"qlcore resume-trading --strategy {sid}")
        return f"resumed {sid}"

    def stop(self, c: Command) -> str:
        sid = c.payload["strategy_id"]
        flatten = bool(c.payload.get("flatten", False))
        with self.engine.modes.unwind():  # its closing orders pass a halted account or strategy
            orders = self.engine.manager.stop(sid, flatten=flatten, actor=c.user)
        return f"stopped {sid}" + (f"; flatten orders {', '.join(orders) or 'none'}" if flatten else "")

    # --- orders -----------------------------------------------------------------------------------
    def submit_order(self, c: Command) -> str:
        p = c.payload
        kernel = self.engine.kernel
        sid = p["strategy_id"]
        managed = self.engine.manager
        if sid in managed.strategy_ids and managed.state(sid) is not StrategyState.RUNNING:
            raise Refused(f"strategy {sid} is {managed.state(sid).value}: it takes no new orders")
        if p["symbol"] not in kernel.instruments:
            raise Refused(f"unknown symbol {p['symbol']!r}; known: {', '.join(sorted(kernel.instruments))}")
        order_id = kernel.submit_order(
            sid,
            p["symbol"],
            OrderSide(p["side"]),
            p["quantity"],
            OrderType(p.get("order_type") or OrderType.MARKET),
            p.get("price"),
            p.get("trigger_price"),
            TimeInForce(p.get("time_in_force") or TimeInForce.GTC),
            tags=_tags(c),
        )
        order = kernel.state.orders[order_id]
        if order.status is OrderStatus.DENIED:
            raise Refused(f"order {order_id} denied: {order.reason}")
        return f"order {order_id} submitted"

    def cancel_order(self, c: Command) -> str:
        order_id = c.payload["order_id"]
        self.engine.kernel.cancel_order(order_id)
        return f"cancel of {order_id} requested"

    def flatten(self, c: Command) -> str:
        sid, symbol = c.payload.get("strategy_id"), c.payload.get("symbol")
        kernel = self.engine.kernel
        if symbol is not None and symbol not in kernel.instruments:
            raise Refused(f"unknown symbol {symbol!r}; known: {', '.join(sorted(kernel.instruments))}")
        with self.engine.modes.unwind():  # closing orders pass a halted account or strategy (operators are never stuck)
            orders = flatten_positions(self.engine, strategy_id=sid, symbol=symbol)
        scope = " ".join(x for x in (sid, symbol) if x) or "the whole account"
        return f"flatten of {scope}: {len(orders)} order(s) {', '.join(orders)}".rstrip()

    # --- risk -------------------------------------------------------------------------------------
    def halt(self, c: Command) -> str:
        return self.engine.halt(c.payload["reason"], actor=c.user, flatten=bool(c.payload.get("flatten", False)))

    def resume_trading(self, c: Command) -> str:
        """The account back to ACTIVE, or with `strategy_id` that strategy (halted or reducing at its
        own scope, or disabled by runaway protection): authorised users only."""
        sid = c.payload.get("strategy_id")
        if sid:
            return self.engine.resume_strategy_trading(sid, c.payload.get("reason") or "", actor=c.user)
        return self.engine.resume_trading(c.payload.get("reason") or "", actor=c.user)

    def set_limits(self, c: Command) -> str:
        p = c.payload
        limits: dict[str, Any] = dict(p["limits"])
        if p.get("strategy_id"):  # the limits of one strategy: {"max_order_quantity": 5, ...}
            limits = {"strategy": {p["strategy_id"]: limits}}
        # merged into the limits in force: a change names what changes, everything else stays
        merged = _merged(self.engine.risk.config.to_dict(), limits)
        self.engine.risk.set_limits(merged, actor=c.user, ts=self.engine.clock.now, reason=p.get("reason") or "")
        return "limits changed" + (f" for strategy {p['strategy_id']}" if p.get("strategy_id") else "")


def flatten_positions(engine: EngineService, *, strategy_id: str | None = None, symbol: str | None = None) -> list[str]:
    """Cancel the open orders in scope and send market orders that bring each position in scope to zero."""
    kernel = engine.kernel
    for order in kernel.state.open_orders(strategy_id, symbol):
        if order.status is not OrderStatus.PENDING_CANCEL:
            kernel.cancel_order(order.order_id)
    ids = []
    for sid, sym in sorted(kernel.state.positions):
        if (strategy_id and sid != strategy_id) or (symbol and sym != symbol):
            continue
        oid = kernel.close_position(sid, sym, tags=OPERATOR_FLATTEN_TAG)
        if oid is not None:
            ids.append(oid)
    return ids


def _tags(c: Command) -> str:
    """An order's provenance: its command, and the scheduled job and approved notebook hash that sent it."""
    tags = [f"command:{c.id}"]
    if c.payload.get("job_id"):
        tags.append(f"job:{c.payload['job_id']}")
    if c.payload.get("code_hash"):
        tags.append(f"hash:{c.payload['code_hash']}")
    return " ".join(tags)


def _merged(current: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """`change` laid over `current`, table by table (a limit set in `change` wins, others stay)."""
    out = dict(current)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


__all__ = ["CommandHandlers", "Refused", "flatten_positions"]
