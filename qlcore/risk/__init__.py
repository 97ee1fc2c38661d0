"""Risk: the pre-trade check chain in the order path (risk and compliance rules, limits by level),
trading modes, real-time monitors, runaway protection and the kill switch.

`RiskHook` is what the kernel calls; `AllowAll` lets everything through. `RiskChain` is the one
hook of every engine, built from `RiskSettings` (one TOML file): lifecycle -> `ModeGate` (account
and strategy modes ACTIVE / REDUCING / HALTED) -> `RunawayGuard` -> `RiskEngine`, which runs the
rules of `qlcore.risk.rules` with limits from a `RiskConfig`. `RiskMonitors` move the modes on
breaches; `halt` is the kill switch. Names are imported on first use, so that
`qlcore risk --help` does not load the trading model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from qlcore._lazy import lazy_exports

if TYPE_CHECKING:
    from qlcore.risk.base import Denial, RiskContext, Rule
    from qlcore.risk.chain import Lifecycle, RiskChain, RiskSettings
    from qlcore.risk.config import Limits, ResolvedLimits, RiskConfig, RiskConfigError
    from qlcore.risk.engine import RiskDecision, RiskEngine
    from qlcore.risk.hook import AllowAll, RiskHook
    from qlcore.risk.killswitch import HaltSummary, halt, resume_trading
    from qlcore.risk.modes import (
        ACCOUNT,
        FLATTEN_TAG,
        ModeConfig,
        ModeError,
        ModeGate,
        NotAuthorisedError,
        TradingMode,
        TradingModes,
    )
    from qlcore.risk.monitors import (
        Limit,
        MonitorConfig,
        MonitorConfigError,
        RiskMonitors,
        ScopeLimits,
    )
    from qlcore.risk.rules import ALL_RULES, COMPLIANCE_RULES, RISK_RULES
    from qlcore.risk.runaway import RunawayConfig, RunawayConfigError, RunawayGuard, RunawayLimits

_EXPORTS = {
    "ACCOUNT": "modes",
    "ALL_RULES": "rules",
    "AllowAll": "hook",
    "COMPLIANCE_RULES": "rules",
    "Denial": "base",
    "FLATTEN_TAG": "modes",
    "HaltSummary": "killswitch",
    "Limit": "monitors",
    "Limits": "config",
    "ModeConfig": "modes",
    "ModeError": "modes",
    "ModeGate": "modes",
    "MonitorConfig": "monitors",
    "MonitorConfigError": "monitors",
    "NotAuthorisedError": "modes",
    "RISK_RULES": "rules",
    "ResolvedLimits": "config",
    "Lifecycle": "chain",
    "RiskChain": "chain",
    "RiskSettings": "chain",
    "RiskConfig": "config",
    "RiskConfigError": "config",
    "RiskContext": "base",
    "RiskDecision": "engine",
    "RiskEngine": "engine",
    "RiskHook": "hook",
    "RiskMonitors": "monitors",
    "Rule": "base",
    "RunawayConfig": "runaway",
    "RunawayConfigError": "runaway",
    "RunawayGuard": "runaway",
    "RunawayLimits": "runaway",
    "ScopeLimits": "monitors",
    "TradingMode": "modes",
    "TradingModes": "modes",
    "halt": "killswitch",
    "resume_trading": "killswitch",
}
__all__ = [
    "ACCOUNT",
    "ALL_RULES",
    "COMPLIANCE_RULES",
    "FLATTEN_TAG",
    "RISK_RULES",
    "AllowAll",
    "Denial",
    "HaltSummary",
    "Lifecycle",
    "Limit",
    "Limits",
    "ModeConfig",
    "ModeError",
    "ModeGate",
    "MonitorConfig",
    "MonitorConfigError",
    "NotAuthorisedError",
    "ResolvedLimits",
    "RiskChain",
    "RiskConfig",
    "RiskConfigError",
    "RiskContext",
    "RiskDecision",
    "RiskEngine",
    "RiskHook",
    "RiskMonitors",
    "RiskSettings",
    "Rule",
    "RunawayConfig",
    "RunawayConfigError",
    "RunawayGuard",
    "RunawayLimits",
    "ScopeLimits",
    "TradingMode",
    "TradingModes",
    "halt",
    "resume_trading",
]


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
