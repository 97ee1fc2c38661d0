"""The limits an engine runs with: a file of the user's, else the default limits file shipped here.

An engine never runs without limits by accident. `engine_limits` picks them:

* ``--limits FILE``: the user's file, as a whole;
* nothing: `DEFAULT_LIMITS_FILE` (``qlcore/risk/default_limits.toml``, each value explained there);
* ``--no-limits --admin-approval REASON``: no limits at all (a cash account, nothing else), only
  where `check_limits_opt_out` allows it: a paper engine, with an admin's reason. The engine records
  the opt-out in the audit log (``engine.limits_off``) with the OS user who started it.

Both files go through the same loader (`RiskSettings.from_file`), whose errors name the file, the
section, the key and the reason. `LimitsSource` says where the limits in force came from; the engine
publishes it with `in_force` for the monitor page.
"""
from __future__ import annotations

import getpass
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from qlcore.risk.chain import RiskSettings
from qlcore.risk.config import FIELDS
from qlcore.risk.monitors import MONITORS

DEFAULT_LIMITS_FILE = Path(__file__).with_name("default_limits.toml")
PAPER = "paper"

DEFAULT, FILE, OFF = "default", "file", "off"


class LimitsOptOutRefused(ValueError):
    """Running without limits was asked for where it is not allowed, or without an admin's say."""


@dataclass(frozen=True, slots=True)
class LimitsOptOut:
    """An allowed opt-out: who started the engine without limits, why, and in which mode."""

    user: str
    reason: str
    mode: str


def check_limits_opt_out(*, mode: str, approval: str | None, user: str | None = None) -> LimitsOptOut:
    """The one place that decides whether an engine may run without limits.

    Only a paper engine may, and only with an admin's say: a stated reason (``--admin-approval``) and
    `user`, the admin who gives it, proven by the engine before it calls this (the admin's signing key
    at hand, matching the users file: `qlcore.control.keys.proven_admin`); it is recorded in the audit
    log with both.

    Raises `LimitsOptOutRefused` naming what is missing.
    """
    if mode != PAPER:
        raise LimitsOptOutRefused(
            f"--no-limits is refused for a {mode} engine: only a paper engine may run without limits; "
            "run it with the default limits or give it a limits file (--limits FILE)"
        )
    reason = (approval or "").strip()
    if not reason:
        raise LimitsOptOutRefused(
            "--no-limits needs --admin-approval REASON: an admin's reason for running this paper engine "
            "without limits (it is recorded in the audit log with your user name)"
        )
    return LimitsOptOut(user or getpass.getuser(), reason, mode)


@dataclass(frozen=True, slots=True)
class LimitsSource:
    """Where the limits in force came from: the default file, the user's file, or an opt-out."""

    kind: str  # DEFAULT, FILE or OFF
    path: Path | None = None
    opt_out: LimitsOptOut | None = None

    def describe(self) -> str:
        if self.kind == DEFAULT:
            return f"default limits file {self.path}"
        if self.kind == FILE:
            return f"limits file {self.path}"
        assert self.opt_out is not None
        return (f"NO LIMITS ({self.opt_out.mode} only), approved for {self.opt_out.user}: "
                f"{self.opt_out.reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": None if self.path is None else str(self.path), "text": self.describe()}


def default_limits_mapping() -> dict[str, Any]:
    """The default limits file as its TOML mapping (to build settings that add to it)."""
    return tomllib.loads(DEFAULT_LIMITS_FILE.read_text())


def limits_toml(mapping: Mapping[str, Any]) -> str:
    """A limits mapping (tables of strings, numbers, booleans, lists and inline tables) as TOML text:
    `RiskSettings.from_file` of it gives `RiskSettings.from_mapping(mapping)`."""
    lines: list[str] = []

    def table(prefix: str, body: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not _is_table(v)}
        if scalars or not prefix:
            if prefix:
                lines.append(f"[{prefix}]")
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
        for k, v in body.items():
            if _is_table(v):
                table(f"{prefix}.{_key(k)}" if prefix else _key(k), v)

    table("", mapping)
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    # a table of limits becomes a [section]; a monitor's { limit, action } stays inline
    return isinstance(value, Mapping) and not set(value) <= {"limit", "action"}


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: Decimals and floats as exact text


def engine_limits(
    path: Path | None, *, no_limits: bool = False, approval: str | None = None, mode: str = PAPER,
    user: str | None = None,
) -> tuple[RiskSettings, LimitsSource]:
    """The risk settings of an engine and where they came from (see the module docstring)."""
    if no_limits:
        if path is not None:
            raise ValueError(f"--no-limits and --limits {path} together: choose one")
        opt_out = check_limits_opt_out(mode=mode, approval=approval, user=user)
        return RiskSettings(), LimitsSource(OFF, None, opt_out)
    if approval is not None:
        raise ValueError("--admin-approval goes with --no-limits only")
    if path is None:
        return RiskSettings.from_file(DEFAULT_LIMITS_FILE), LimitsSource(DEFAULT, DEFAULT_LIMITS_FILE)
    return RiskSettings.from_file(path), LimitsSource(FILE, path.resolve())


def in_force(settings: RiskSettings) -> list[dict[str, str]]:
    """The account-level limits in force, one row each (name, limit as text, what it bounds), for the
    dashboards: pre-trade limits, runaway protection and the monitors. Strategy and instrument levels
    are counted, not listed."""
    account = settings.limits.account
    rows = []
    for name, value in account.items():
        if name in _WINDOWS.values() or name in ("fee_bps", "min_fee"):
            continue  # shown with their limit, or not a limit
        text = _text(value)
        if name in _WINDOWS:
            text += f" per {_text(getattr(settings.limits.resolve('', ''), _WINDOWS[name]))} s"
        rows.append({"name": name, "limit": text, "meaning": FIELDS[name].help})
    runaway = settings.runaway.default
    if runaway.max_orders is not None:
        rows.append({"name": "runaway max_orders", "limit": f"{runaway.max_orders} per {_text(runaway.order_window_s)} s",
                     "meaning": "orders of one strategy: more disables it"})
    if runaway.max_fills is not None:
        rows.append({"name": "runaway max_fills", "limit": f"{runaway.max_fills} per {_text(runaway.fill_window_s)} s",
                     "meaning": "fills of one strategy: more disables it"})
    for scope, limits in (("account", settings.monitors.account), ("each strategy", settings.monitors.strategy_default)):
        for name, lim in limits.items():
            rows.append({"name": f"monitor {name}", "limit": f"{_text(lim.value)} -> {lim.action.value}",
                         "meaning": f"{MONITORS[name][0]} ({scope})"})
    levels = len(settings.limits.strategies) + len(settings.limits.instruments) + len(settings.limits.strategy_instruments)
    if levels:
        rows.append({"name": "more specific levels", "limit": str(levels),
                     "meaning": "strategy / instrument sections of the file, which override these"})
    return rows


# a rate limit -> its window, shown together
_WINDOWS = {"max_orders_per_window": "order_window_s", "max_account_orders_per_window": "account_order_window_s",
            "max_messages_per_window": "message_window_s"}


def summary(settings: RiskSettings) -> str:
    """The main limits in one line: max order, position, daily loss, open orders, order rate, leverage."""
    lim, runaway = settings.limits.account, settings.runaway.default
    parts = [
        ("max order", lim.max_order_quantity, " shares"), ("max order notional", lim.max_order_notional, ""),
        ("max position", lim.max_position, ""), ("daily loss", lim.max_daily_loss, ""),
        ("open orders", lim.max_open_orders, " per strategy"), ("orders", lim.max_orders_per_window, " per strategy-second"),
        ("runaway", runaway.max_orders, " orders/s"), ("leverage", lim.leverage, ""),
    ]
    text = ", ".join(f"{name} {_text(value)}{unit}" for name, value, unit in parts if value is not None)
    if lim.buying_power:
        text += (", " if text else "") + "cash account"
    return text or "none"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)
