"""Execution: order validation before anything leaves the engine."""

from qlcore.execution.validation import validate_order

__all__ = ["validate_order"]
