"""Helpers the research notebooks call: results recorded for review, data summaries, limit checks.

Recording (`record` / `read_records`) works like scrapbook's ``glue``: the value goes into the
notebook as a display output of its own MIME type (`RECORD_MIME`, JSON), so the executed notebook
that papermill writes carries it, and any tool reads it back without running the notebook again.
A ``text/plain`` copy shows in JupyterLab and in ``git diff``.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

RECORD_MIME = "application/vnd.qlcore.record+json"
MODES = ("backtest", "paper")


def record(name: str, value: Any) -> None:
    """Record `value` (JSON-ready after `jsonable`) under `name` as an output of the current cell."""
    from IPython.display import display

    data = {"name": name, "value": jsonable(value)}
    display({RECORD_MIME: data, "text/plain": f"recorded {name}: {json.dumps(data['value'], sort_keys=True)}"}, raw=True)


def read_records(path: str | os.PathLike) -> dict[str, Any]:
    """Every value recorded in an executed notebook, by name (the last one wins)."""
    import nbformat

    nb = nbformat.read(os.fspath(path), as_version=4)
    found: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get(RECORD_MIME)
            if data is not None:
                found[data["name"]] = data["value"]
    return found


def jsonable(value: Any) -> Any:
    """Plain JSON values: Decimals as strings (exact), NaN as None, timestamps as ISO strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def data_summary(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per symbol: bars, first and last bar, frequency, first and last close, change."""
    rows = []
    for symbol, df in frames.items():
        close = df["close"]
        rows.append(
            {
                "symbol": symbol,
                "bars": len(df),
                "start": df.index[0],
                "end": df.index[-1],
                "frequency": df.attrs.get("frequency", ""),
                "first_close": float(close.iloc[0]),
                "last_close": float(close.iloc[-1]),
                "change": float(close.iloc[-1] / close.iloc[0] - 1.0),
            }
        )
    return pd.DataFrame(rows)


def as_list(value: Any) -> list[Any]:
    """A list parameter as papermill may pass it: a list, JSON text (``'["IBM"]'``), or ``"A,B"``.

    ``papermill -p symbols '["IBM"]'`` hands the notebook the text, not a list (``-y`` parses YAML).
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed = json.loads(text)
            if not isinstance(parsed, list):
                raise ValueError(f"expected a JSON list, got {value!r}")
            return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    if value is None:
        return []
    return list(value)


def as_dict(value: Any) -> dict[str, Any]:
    """A mapping parameter: a dict, or JSON text as ``papermill -p`` passes it."""
    if isinstance(value, str):
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError(f"expected a JSON object, got {value!r}")
        return parsed
    return dict(value)


def check_mode(mode: str) -> str:
    """`mode` if a strategy notebook can run it: "backtest" (the backtest engine) or "paper" (the paper
    engine on a replay of the notebook's data, `qlcore.research.paper.run_paper`)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def check_limits(result: Any, limits: Mapping[str, float]) -> pd.DataFrame:
    """The backtest against the notebook's risk limits: one row per limit with value and verdict.

    Known limits: ``max_drawdown`` (a positive fraction: 0.25 allows a 25% fall from the peak),
    ``max_position_value`` (largest gross exposure at a close), ``min_trades``.
    """
    measured = {
        "max_drawdown": (-result.metrics.max_drawdown, lambda v, lim: v <= lim),
        "max_position_value": (float(result.exposure.max()), lambda v, lim: v <= lim),
        "min_trades": (result.metrics.n_trades, lambda v, lim: v >= lim),
    }
    unknown = sorted(set(limits) - set(measured))
    if unknown:
        raise KeyError(f"unknown limit(s) {', '.join(unknown)}; known limits: {', '.join(measured)}")
    rows = []
    for name, limit in limits.items():
        value, within = measured[name]
        rows.append({"limit": name, "value": value, "allowed": limit, "ok": bool(within(value, limit))})
    return pd.DataFrame(rows, columns=["limit", "value", "allowed", "ok"])
