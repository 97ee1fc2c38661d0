"""Control: how the CLI, dashboards and scheduled jobs ask the engine to act (the command queue)."""
from __future__ import annotations

from qlcore.control.commands import (
    SCHEMAS,
    Command,
    CommandError,
    CommandLimitError,
    CommandLimits,
    CommandQueue,
    CommandStateError,
)

__all__ = ["SCHEMAS", "Command", "CommandError", "CommandLimitError", "CommandLimits", "CommandQueue", "CommandStateError"]
