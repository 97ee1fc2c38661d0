"""Risk: the pre-trade hook in the order path. The full rule set arrives with the risk issue."""

from qlcore.risk.hook import AllowAll, RiskHook

__all__ = ["AllowAll", "RiskHook"]
