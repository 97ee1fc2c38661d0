"""Research: vectorbt sweeps and the parity check between vectorbt and the event-driven engine.

`sweep` runs a grid of parameter sets through vectorbt with the engine's conventions (a signal on
bar t fills at bar t+1's open, fees in basis points) and returns a tidy table of metrics per set.
`parity` runs one set through both vectorbt and the engine and compares the trades one by one.
Both need a strategy with a vectorized form: a ``vectorized_signals(close, **params)`` classmethod
(the built-ins `sma_cross` and `mean_reversion` have one; `rebalance` does not). See docs/research.md.
"""

from qlcore.research.inputs import (
    NoVectorizedFormError,
    as_frames,
    has_vectorized_form,
    project_path,
)
from qlcore.research.notebook import (
    RECORD_MIME,
    as_dict,
    as_list,
    check_limits,
    check_mode,
    data_summary,
    read_records,
    record,
)
from qlcore.research.parity import ParityReport, TradeDifference, compare_trades, parity
from qlcore.research.render import prices_plot, returns_plot
from qlcore.research.sweep import METRICS, SweepResult, sweep
from qlcore.research.vbt import ENGINE, Conventions, vectorbt

__all__ = [
    "ENGINE",
    "METRICS",
    "RECORD_MIME",
    "Conventions",
    "NoVectorizedFormError",
    "ParityReport",
    "SweepResult",
    "TradeDifference",
    "as_dict",
    "as_frames",
    "as_list",
    "check_limits",
    "check_mode",
    "compare_trades",
    "data_summary",
    "has_vectorized_form",
    "parity",
    "prices_plot",
    "project_path",
    "read_records",
    "record",
    "returns_plot",
    "sweep",
    "vectorbt",
]
