"""Risk: the pre-trade check chain in the order path (risk and compliance rules, limits by level).

`RiskHook` is what the kernel calls; `AllowAll` lets everything through; `RiskEngine` runs the
rules of `qlcore.risk.rules` with limits from a `RiskConfig`. Names are imported on first use, so
that `qlcore risk --help` does not load the trading model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from qlcore._lazy import lazy_exports

if TYPE_CHECKING:
    from qlcore.risk.base import Denial, RiskContext, Rule
    from qlcore.risk.config import Limits, ResolvedLimits, RiskConfig, RiskConfigError
    from qlcore.risk.engine import RiskDecision, RiskEngine
    from qlcore.risk.hook import AllowAll, RiskHook
    from qlcore.risk.rules import ALL_RULES, COMPLIANCE_RULES, RISK_RULES

_EXPORTS = {
    "ALL_RULES": "rules",
    "COMPLIANCE_RULES": "rules",
    "RISK_RULES": "rules",
    "AllowAll": "hook",
    "Denial": "base",
    "Limits": "config",
    "ResolvedLimits": "config",
    "RiskConfig": "config",
    "RiskConfigError": "config",
    "RiskContext": "base",
    "RiskDecision": "engine",
    "RiskEngine": "engine",
    "RiskHook": "hook",
    "Rule": "base",
}
__all__ = [
    "ALL_RULES",
    "COMPLIANCE_RULES",
    "RISK_RULES",
    "AllowAll",
    "Denial",
    "Limits",
    "ResolvedLimits",
    "RiskConfig",
    "RiskConfigError",
    "RiskContext",
    "RiskDecision",
    "RiskEngine",
    "RiskHook",
    "Rule",
]


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
