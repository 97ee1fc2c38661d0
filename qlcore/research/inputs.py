"""What research functions accept: strategies with a vectorized form, parameter grids, bar data."""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import pandas as pd

from qlcore.strategies import (
    BUILTINS,
    InvalidParameterError,
    Strategy,
    UnknownParameterError,
    strategy_class,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DataLike = pd.DataFrame | Mapping[str, pd.DataFrame] | str | os.PathLike | Iterable[str | os.PathLike]
GridLike = Mapping[str, Any] | Iterable[Mapping[str, Any]] | pd.DataFrame


class NoVectorizedFormError(ValueError):
    """A strategy without `vectorized_signals`: vectorbt cannot run it."""


def has_vectorized_form(cls: type[Strategy]) -> bool:
    return callable(getattr(cls, "vectorized_signals", None))


def vectorized_class(strategy: str | type[Strategy]) -> type[Strategy]:
    """The strategy class for a name, `module:Class` or class, if it has a vectorized form."""
    cls = strategy_class(strategy) if isinstance(strategy, str) else strategy
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"expected a strategy name or Strategy subclass, got {strategy!r}")
    if not has_vectorized_form(cls):
        with_form = ", ".join(sorted(n for n, c in BUILTINS.items() if has_vectorized_form(c)))
        raise NoVectorizedFormError(
            f"{cls.name} has no vectorized form (no vectorized_signals classmethod), so vectorbt "
            f"cannot run it; built-in strategies with one: {with_form}"
        )
    return cls


def project_path(path: str | os.PathLike) -> Path:
    """`path` as given when it exists or is absolute, else relative to the repository root.

    Notebooks run with their own folder as working directory (papermill, nbval); a parameter such
    as ``"../shared/data/orcl-1995-2014-daily.csv"`` then still means the same file.
    """
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return PROJECT_ROOT / p


def as_frames(data: DataLike) -> dict[str, pd.DataFrame]:
    """Bar frames by symbol from a frame, a mapping, a spec for `qlcore.data.load` or a list of specs.

    A spec is a sample symbol (``"IBM"``), a ``.csv`` / ``.parquet`` path or ``"synthetic:N[:seed]"``.
    """
    from qlcore.data import load

    if isinstance(data, pd.DataFrame):
        return {str(data.attrs.get("symbol") or "ASSET"): data}
    if isinstance(data, Mapping):
        frames = {str(sym): df for sym, df in data.items()}
    else:
        specs = [data] if isinstance(data, str | os.PathLike) else list(data)
        frames = {}
        for spec in specs:
            text = os.fspath(spec)
            is_file = Path(text).suffix.lower() in (".csv", ".parquet")
            df = load(project_path(text) if is_file else text)
            frames[str(df.attrs.get("symbol") or text)] = df
    if not frames:
        raise ValueError("no data given")
    for sym, df in frames.items():
        missing = [c for c in ("open", "close") if c not in df.columns]
        if missing:
            raise ValueError(f"{sym}: bar frame lacks columns {missing}")
        if not isinstance(df.index, pd.DatetimeIndex):
            raise ValueError(f"{sym}: bar frame needs a DatetimeIndex, got {type(df.index).__name__}")
        if len(df) < 2:
            raise ValueError(f"{sym}: needs at least two bars, got {len(df)}")
    return frames


def parameter_sets(cls: type[Strategy], grid: GridLike) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """(swept names, valid sets with every declared parameter, skipped sets with the reason).

    `grid` maps parameter names to values or lists of values (their product is swept), or lists
    the sets (dicts or DataFrame rows). Each set is checked by constructing the strategy, so values
    are converted to their declared types and relations such as ``fast < slow`` hold; sets that
    break them are skipped with the strategy's message. Unknown names raise, listing the valid ones.
    """
    rows: list[dict[str, Any]]
    if isinstance(grid, pd.DataFrame):
        rows = cast(list[dict[str, Any]], grid.to_dict("records"))  # columns are parameter names
    elif isinstance(grid, Mapping):
        names = list(grid)
        values = [_values(grid[name]) for name in names]
        rows = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    else:
        rows = [dict(r) for r in grid]
    names = list(dict.fromkeys(k for r in rows for k in r))
    unknown = [k for k in names if k not in cls.params]
    if unknown:
        valid = ", ".join(f"{k} (default {p.default})" for k, p in cls.params.items())
        raise UnknownParameterError(f"{cls.name}: unknown parameter(s) {', '.join(unknown)}; valid parameters: {valid}")
    if not rows:
        raise ValueError("the grid has no parameter sets")
    valid_rows, skipped = [], []
    for row in rows:
        try:
            strategy = cls(**row)
        except InvalidParameterError as exc:
            skipped.append({**row, "reason": str(exc)})
            continue
        valid_rows.append(strategy.param_values)
    return names, pd.DataFrame(valid_rows, columns=list(cls.params)), pd.DataFrame(skipped, columns=[*names, "reason"])


def _values(value: Any) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [value]
    return list(value)
