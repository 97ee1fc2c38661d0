"""The saved-outputs check at submit time, with the semantics of ``pytest --nbval-lax``.

Every cell must run without an error (papermill already stops at the first one); a cell marked
``# NBVAL_CHECK_OUTPUT`` (or tagged ``nbval-check-output``) must also produce the outputs saved in
the submitted notebook. The comparison follows nbval's: per output key (stream name, or MIME
type of display data), the values in order; execution counts, metadata, tracebacks and images
are ignored. It reuses papermill's run, so it costs no second kernel.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

_CHECK = {"NBVAL_CHECK_OUTPUT"}
_NO_CHECK = {"NBVAL_IGNORE_OUTPUT", "PYTEST_VALIDATE_IGNORE_OUTPUT", "NBVAL_SKIP", "NBVAL_RAISES_EXCEPTION"}
_IGNORED_KEYS = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count", "transient",
                 "image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"}
_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


@dataclass(frozen=True, slots=True)
class OutputsVerdict:
    """Which cells were compared and, for each that differs, why (cell index in the submitted notebook)."""

    checked: list[int] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checked_cells": self.checked,
                "failures": {str(k): v for k, v in self.failures.items()}}


def _markers(cell: Any) -> set[str]:
    src = cell.get("source", "")
    text = "".join(src) if isinstance(src, list) else str(src)
    found = {line.strip().lstrip("#").strip() for line in text.splitlines() if line.strip().startswith("#")}
    tags = {t.upper().replace("-", "_") for t in cell.get("metadata", {}).get("tags", [])}
    return (found | tags) & (_CHECK | _NO_CHECK)


def _flatten(outputs: list[Any]) -> dict[str, list[Any]]:
    flat: dict[str, list[Any]] = defaultdict(list)
    streams: dict[str, str] = {}
    for out in outputs:
        if out.get("output_type") == "stream":  # consecutive writes to one stream compare as one text
            streams[out.get("name", "stdout")] = streams.get(out.get("name", "stdout"), "") + str(out.get("text", ""))
            continue
        for key, value in out.items():
            if key == "data":
                for mime, item in value.items():
                    if mime not in _IGNORED_KEYS:
                        flat[mime].append("".join(item) if isinstance(item, list) else item)
            elif key not in _IGNORED_KEYS:
                flat[key].append(value)
    for name, text in streams.items():
        flat[name].append(text)
    return dict(flat)


def check_outputs(submitted: str | os.PathLike, executed: str | os.PathLike) -> OutputsVerdict:
    """Compare the marked cells' saved outputs in `submitted` with those papermill produced in `executed`."""
    import nbformat

    source = nbformat.read(os.fspath(submitted), as_version=4).cells
    ran = [c for c in nbformat.read(os.fspath(executed), as_version=4).cells
           if not _PAPERMILL_TAGS & set(c.get("metadata", {}).get("tags", []))]
    checked: list[int] = []
    failures: dict[int, str] = {}
    for index, (cell, new) in enumerate(zip(source, ran, strict=False)):
        if cell.get("cell_type") != "code" or _markers(cell) != _CHECK:
            continue
        checked.append(index)
        want, got = _flatten(cell.get("outputs", [])), _flatten(new.get("outputs", []))
        if set(want) != set(got):
            failures[index] = f"cell {index}: output kinds differ: saved {sorted(want)}, now {sorted(got)}"
            continue
        for key in want:
            if want[key] != got[key]:
                failures[index] = f"cell {index}: {key} differs: saved {_short(want[key])}, now {_short(got[key])}"
                break
    return OutputsVerdict(checked, failures)


def _short(values: list[Any]) -> str:
    text = repr(values[0] if len(values) == 1 else values)
    return text if len(text) <= 200 else text[:197] + "..."
