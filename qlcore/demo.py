"""The main job of `make up`: each built-in strategy on the embedded real data, stored, replayed, reported."""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from qlcore.data import SAMPLE_SYMBOLS, load_sample
from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.events import EventStore
from qlcore.events.replay import replay
from qlcore.portfolio.report import write_report
from qlcore.portfolio.result import BacktestResult
from qlcore.store.db import connect, project_data_dir
from qlcore.store.runs import save_run
from qlcore.strategies import create_strategy

DEMO_CONFIG = BacktestConfig(initial_cash=Decimal(100_000), fee_bps=Decimal(10))

# (strategy, parameters, symbols): one run each
DEMO_RUNS: list[tuple[str, dict, tuple[str, ...]]] = [
    *[("sma_cross", {"fast": 10, "slow": 50, "quantity": 100}, (s,)) for s in SAMPLE_SYMBOLS],
    *[("mean_reversion", {"window": 20, "entry_z": 2.0, "exit_z": 0.0, "quantity": 100}, (s,)) for s in SAMPLE_SYMBOLS],
    ("rebalance", {"every": 21, "invest": "0.95"}, ("AAPL", "IBM", "MSFT")),
]


def run_demo(db: str | None = None, report: Path | None = None, echo: Callable[[str], None] = print) -> list[BacktestResult]:
    """Run `DEMO_RUNS`, store each, verify each by replay, write one HTML report; return the results."""
    engine = connect(db)
    store = EventStore(engine=engine)
    results = []
    echo(f"store: {engine.url.render_as_string(hide_password=True)}")
    echo(f"{'run id':<28} {'strategy':<15} {'symbols':<15} {'final equity':>14} {'return':>8} {'sharpe':>7} {'max dd':>8} {'fills':>6} {'closed':>6}  replay")
    for name, params, symbols in DEMO_RUNS:
        frames = {s: load_sample(s) for s in symbols}
        bt = BacktestEngine(DEMO_CONFIG, store=store)
        bt.add_strategy(create_strategy(name, params))
        result = bt.run(frames)
        save_run(engine, result)
        verified = replay(store, result.run_id).verified
        m = result.metrics
        echo(
            f"{result.run_id:<28} {name:<15} {','.join(symbols):<15} {result.final_equity:>14,.2f} "
            f"{m.total_return:>8.2%} {m.sharpe:>7.2f} {m.max_drawdown:>8.2%} {len(result.fills):>6} {m.n_trades:>6}  "
            f"{'verified' if verified else 'MISMATCH'}"
        )
        if not verified:
            raise RuntimeError(f"replay of {result.run_id} does not reproduce its state hash")
        results.append(result)
    path = report or project_data_dir() / "reports" / "demo.html"
    write_report(path, [("", r._repr_html_()) for r in results])
    echo(f"report: {path}")
    echo("fills: orders filled; closed: round trips closed (a position still open is not counted)")
    echo("next: qlcore runs | qlcore replay --verify <run id> | qlcore backtest --help")
    return results
