"""The saved-outputs check at submit (``--nbval-lax`` semantics): marked cells must reproduce their outputs."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from signed_jobs import keys

from qlcore.ops.outputs import check_outputs
from qlcore.ops.submissions import ReviewError, approve, submit


def stream(text: str):
    return new_output("stream", name="stdout", text=text)


def result(value: str, count: int = 1):
    return new_output("execute_result", data={"text/plain": value}, execution_count=count)


def notebook(path: Path, cells: list) -> Path:
    nbformat.write(new_notebook(cells=cells), path)
    return path


def cell(source: str, outputs=(), tags=()):
    c = new_code_cell(source)
    c.outputs = list(outputs)
    c.metadata["tags"] = list(tags)
    return c


def test_only_marked_cells_are_compared_ignoring_execution_counts_and_split_streams(tmp_path):
    saved = notebook(tmp_path / "saved.ipynb", [
        new_markdown_cell("# m"),
        cell("x = 1", tags=["parameters"]),
        cell("# NBVAL_CHECK_OUTPUT\nprint('a'); print('b'); x", [stream("a\nb\n"), result("1", 4)]),
        cell("print(time.time())", [stream("123.4\n")]),  # not marked: free to change
        cell("x", [result("1")], tags=["nbval-check-output"]),
    ])
    ran = notebook(tmp_path / "ran.ipynb", [
        new_markdown_cell("# m"),
        cell("x = 1", tags=["parameters"]),
        cell("# Parameters\nx = 1", tags=["injected-parameters"]),  # papermill's: not in the submitted notebook
        cell("# NBVAL_CHECK_OUTPUT\nprint('a'); print('b'); x", [stream("a\n"), stream("b\n"), result("1", 9)]),
        cell("print(time.time())", [stream("999.9\n")]),
        cell("x", [result("1", 2)], tags=["nbval-check-output"]),
    ])
    verdict = check_outputs(saved, ran)
    assert verdict.passed and verdict.checked == [2, 4]
    assert verdict.as_dict() == {"passed": True, "checked_cells": [2, 4], "failures": {}}


def test_a_marked_cell_whose_output_changed_fails_naming_the_cell_and_both_values(tmp_path):
    saved = notebook(tmp_path / "saved.ipynb", [cell("# NBVAL_CHECK_OUTPUT\n40 + 2", [result("42")]),
                                                 cell("# NBVAL_CHECK_OUTPUT\nprint('hi')", [stream("hi\n")])])
    ran = notebook(tmp_path / "ran.ipynb", [cell("# NBVAL_CHECK_OUTPUT\n40 + 2", [result("43")]),
                                             cell("# NBVAL_CHECK_OUTPUT\nprint('hi')", [result("'hi'")])])
    verdict = check_outputs(saved, ran)
    assert not verdict.passed
    assert verdict.failures == {
        0: "cell 0: text/plain differs: saved '42', now '43'",
        1: "cell 1: output kinds differ: saved ['stdout'], now ['text/plain']",
    }


def test_submit_fails_a_notebook_whose_checked_output_no_longer_reproduces(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    stale = notebook(tmp_path / "stale.ipynb", [cell("n = 3", tags=["parameters"]),
                                                 cell("# NBVAL_CHECK_OUTPUT\nsum(range(n))", [result("5")])])
    alice, bob = keys(tmp_path)
    bad = submit(stale, {}, alice, db=url, data_dir=tmp_path)
    assert bad.status == "failed"
    assert bad.error == "nbval: cell 1: text/plain differs: saved '5', now '3'"
    assert bad.results["nbval"] == {"passed": False, "checked_cells": [1], "run": "submission",
                                    "failures": {"1": "cell 1: text/plain differs: saved '5', now '3'"}}
    with pytest.raises(ReviewError, match="is failed: only a succeeded submission can be approved"):
        approve(bad.id, bob, "0 16 * * *", db=url, schedules_dir=tmp_path / "schedules", data_dir=tmp_path)


def test_saved_outputs_are_checked_with_the_notebooks_own_defaults_whatever_the_submitted_parameters(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    nb = notebook(tmp_path / "n.ipynb", [cell("n = 3", tags=["parameters"]),
                                          cell("# NBVAL_CHECK_OUTPUT\nsum(range(n))", [result("3")])])
    alice, _ = keys(tmp_path)
    same = submit(nb, {"n": "3"}, alice, db=url, data_dir=tmp_path)  # the defaults: one run is enough
    assert same.status == "succeeded"
    assert same.results["nbval"] == {"passed": True, "checked_cells": [1], "failures": {}, "run": "submission"}
    other = submit(nb, {"n": "4"}, alice, db=url, data_dir=tmp_path)  # 6, not the saved 3: checked on a second run
    assert other.status == "succeeded" and other.results["nbval"]["run"] == "defaults"
    assert other.results["nbval"]["passed"] is True
    assert (Path(other.output_path).parent / "nbval.ipynb").is_file()
