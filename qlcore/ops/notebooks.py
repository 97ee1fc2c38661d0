"""What a submitted notebook is: its normalised hash and its declared parameters, and checks on values for them.

`notebook_hash` covers everything in the notebook that decides what a run executes, and nothing
that a re-run or a reader's view changes:

* every cell's type and source (line endings normalised), in order: markdown and raw cells too,
  since a raw or markdown cell turned into code (or back) changes what runs;
* each cell's metadata except the keys in `DISPLAY_ONLY_METADATA`, so `tags` are covered
  (``parameters``, ``skip-execution`` and ``raises-exception`` change which cells run and whether an
  error stops the run) and so is any key an extension may act on; the excluded keys are how a cell
  is shown (``collapsed``, ``scrolled``, ``jupyter.source_hidden``...) or what a past run recorded
  (``execution`` timings, ``papermill`` status, ``ExecuteTime``);
* the kernelspec's name and language (which kernel would run it).

Outputs, execution counts, cell ids and the rest of the notebook's metadata are left out.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlcore.store.scrub import SECRET_NAME


class ParameterError(ValueError):
    """A notebook parameter that cannot be used: unknown, of the wrong type, or a secret."""


class NoParametersCellError(ValueError):
    """The notebook has no cell tagged `parameters`, so it cannot be parameterised or reviewed."""


@dataclass(frozen=True, slots=True)
class NotebookParameters:
    """The parameters a notebook declares: name -> literal default, in the order of the cell."""

    path: Path
    defaults: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return list(self.defaults)


class NotANotebookError(ValueError):
    """A file that is not a Jupyter notebook (nbformat 4 JSON); the message never quotes its content."""


# cell metadata that only changes how a cell is shown, or records a past run: not part of the hash
DISPLAY_ONLY_METADATA = frozenset({"collapsed", "scrolled", "jupyter", "editable", "deletable", "trusted",
                                   "execution", "papermill", "ExecuteTime", "slideshow"})


def parse_notebook(data: bytes, where: str | os.PathLike) -> Any:
    """The notebook in `data`, or `NotANotebookError` naming the file and why (never quoting it)."""
    import nbformat

    def refuse(why: str) -> NotANotebookError:
        return NotANotebookError(f"{where} is not a Jupyter notebook: {why}; submit an .ipynb file "
                                 "(nbformat 4 JSON)")

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("it is not UTF-8 text") from None
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise refuse("it is not JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list) or raw.get("nbformat") != 4:
        raise refuse("it is JSON but not nbformat 4 (no 'cells' list, or 'nbformat' is not 4)")
    if not all(isinstance(c, dict) and c.get("cell_type") in ("code", "markdown", "raw") for c in raw["cells"]):
        raise refuse("a cell is not a code, markdown or raw cell")
    try:
        return nbformat.reads(text, as_version=4)
    except Exception:  # nbformat's messages may quote the file
        raise refuse("nbformat cannot read it") from None


def _read(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"notebook not found: {p}")
    return parse_notebook(p.read_bytes(), p)


def _source(cell: Any) -> str:
    src = cell.get("source", "")
    text = "".join(src) if isinstance(src, list) else str(src)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def normalised_notebook(nb: Any) -> dict[str, Any]:
    """What `notebook_hash` covers (see the module's docstring), as plain JSON values."""
    spec = nb.get("metadata", {}).get("kernelspec", {}) or {}
    cells = [{"type": c.get("cell_type"), "source": _source(c),
              "metadata": {k: v for k, v in dict(c.get("metadata", {})).items() if k not in DISPLAY_ONLY_METADATA}}
             for c in nb.cells]
    return {"format": "qlcore-notebook/2", "kernel": {"name": spec.get("name", ""), "language": spec.get("language", "")},
            "cells": cells}


def notebook_digest(nb: Any) -> str:
    data = json.dumps(normalised_notebook(nb), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def notebook_hash(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the normalised notebook: cells, their execution-relevant metadata, the kernel."""
    return notebook_digest(_read(path))


def inspect_notebook(path: str | os.PathLike, data: bytes | None = None) -> NotebookParameters:
    """The parameters declared by the `parameters`-tagged cell (simple assignments of literals).

    `data`: the notebook's bytes when already read (the file is then not read again)."""
    nb = _read(path) if data is None else parse_notebook(data, path)
    cells = [c for c in nb.cells if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise NoParametersCellError(
            f"{path}: no code cell tagged 'parameters'; tag the cell that assigns the notebook's parameters "
            "(JupyterLab: Property Inspector > Cell Tags) so papermill can set them and a reviewer can see them"
        )
    try:
        tree = ast.parse(_source(cells[0]))
    except SyntaxError as exc:
        raise NoParametersCellError(f"{path}: the parameters cell is not valid Python: {exc}") from None
    defaults: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        try:
            defaults[name] = ast.literal_eval(value)
        except ValueError:
            raise ParameterError(
                f"{path}: parameter {name!r} has a default that is not a literal "
                f"({ast.unparse(value)}); the parameters cell must assign plain values"
            ) from None
    return NotebookParameters(Path(path), defaults)


def check_not_secret(names: list[str]) -> None:
    """Refuse parameter names that look like secrets: those belong in the environment."""
    secret = [n for n in names if SECRET_NAME.search(n)]
    if secret:
        raise ParameterError(
            f"parameter(s) {', '.join(secret)} look like secrets; secrets must not be notebook parameters "
            "(they would be stored in the output notebook and the submission): read them from the environment"
        )


def validate_params(declared: NotebookParameters, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` checked against the declared ones; text values (from the CLI) are converted to the default's type."""
    check_not_secret(list(params))
    unknown = sorted(set(params) - set(declared.defaults))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(unknown)} for {declared.path.name}; "
            f"valid parameters: {', '.join(declared.names) or '(none declared)'}"
        )
    return {name: _coerce(name, value, declared.defaults[name]) for name, value in params.items()}


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(name: str, value: Any, default: Any) -> Any:
    def bad(expected: str) -> ParameterError:
        return ParameterError(f"parameter {name!r}: {value!r} is not {expected} (the default is {default!r})")

    if default is None:
        return value
    text = value.strip() if isinstance(value, str) else None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise bad("a boolean")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text is not None:
            try:
                return int(text.replace("_", ""))
            except ValueError:
                pass
        raise bad("an integer")
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if text is not None:
            try:
                return float(text)
            except ValueError:
                pass
        raise bad("a number")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise bad("text")
    if isinstance(default, list | tuple):
        if isinstance(value, list | tuple):
            return list(value)
        if text is not None:
            if text.startswith("["):
                parsed = _json(text, bad, "a list")
                if isinstance(parsed, list):
                    return parsed
                raise bad("a list")
            return [part.strip() for part in text.split(",") if part.strip()]
        raise bad("a list")
    if isinstance(default, dict):
        if isinstance(value, Mapping):
            return dict(value)
        if text is not None:
            parsed = _json(text, bad, "a JSON object")
            if isinstance(parsed, dict):
                return parsed
        raise bad("a JSON object")
    if type(value) is type(default):
        return value
    raise bad(f"a {type(default).__name__}")


def _json(text: str, bad: Any, expected: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise bad(expected) from None
