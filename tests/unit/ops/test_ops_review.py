"""Notebook submission and review: code hash, declared parameters, papermill runs, approval, the gate.

Two real kernel runs in this module (one notebook that records a result, the same one told to
raise); the approval tests reuse the first run's record.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from signed_jobs import add_user, keys
from sqlalchemy import insert

from qlcore.audit.log import AuditLog
from qlcore.ops.bundles import approved_dir, read_bundle
from qlcore.ops.notebooks import (
    NoParametersCellError,
    ParameterError,
    inspect_notebook,
    notebook_hash,
    validate_params,
)
from qlcore.ops.schedules import (
    GateRefused,
    InvalidCronError,
    check_gate,
    read_schedule,
    validate_cron,
)
from qlcore.ops.submissions import (
    ReviewError,
    Submission,
    approve,
    get_submission,
    list_submissions,
    reject,
    revoke,
    submit,
)
from qlcore.store.db import connect
from qlcore.store.liveness import pid_alive
from qlcore.store.tables import signed_reviews, submissions

PARAMS = 'fast = 10\nlabel = "demo"\nrate = 0.5\nsymbols = ["IBM"]\nfail = False\n'
BODY = (
    "from qlcore.research.notebook import record\n"
    "if fail:\n"
    "    raise RuntimeError('boom: told to fail')\n"
    "record('results', {'fast': fast, 'double': fast * 2, 'label': label, 'symbols': symbols})\n"
)


def write_notebook(path: Path, *, params: str | None = PARAMS, body: str = BODY, note: str = "# demo") -> Path:
    cells = [new_markdown_cell(note)]
    if params is not None:
        cell = new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    cells.append(new_code_cell(body))
    nbformat.write(new_notebook(cells=cells), path)
    return path


def edit_cell(path: Path, index: int, source: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells[index].source = source
    nbformat.write(nb, path)


# --- the notebook: hash and parameters (no kernel) -----------------------------------------------
def test_every_cell_and_its_tags_count_in_the_hash_but_outputs_line_endings_and_display_do_not(tmp_path):
    nb = write_notebook(tmp_path / "n.ipynb")
    original = notebook_hash(nb)
    raw = nb.read_text().replace("\\n", "\\r\\n")  # the same code with Windows line endings
    (tmp_path / "crlf.ipynb").write_text(raw)
    assert notebook_hash(tmp_path / "crlf.ipynb") == original
    shown = nbformat.read(nb, as_version=4)
    shown.cells[2].outputs = [nbformat.v4.new_output("stream", text="ran\n")]
    shown.cells[2].execution_count = 7
    shown.cells[2].metadata.update(collapsed=True, jupyter={"source_hidden": True}, execution={"t": "2026"})
    nbformat.write(shown, nb)
    assert notebook_hash(nb) == original  # how it looks and what a past run left: not what runs
    seen = {original}
    for change in ("markdown", "code", "params", "tag", "kernel"):
        nb_ = nbformat.read(nb, as_version=4)
        if change == "markdown":
            nb_.cells[0].source = "# demo, reworded"
        elif change == "code":
            nb_.cells[2].source = BODY.replace("fast * 2", "fast * 3")
        elif change == "params":
            nb_.cells[1].source = PARAMS.replace("fast = 10", "fast = 11")
        elif change == "tag":
            nb_.cells[2].metadata["tags"] = ["raises-exception"]
        else:
            nb_.metadata["kernelspec"] = {"name": "other", "language": "python", "display_name": "Other"}
        nbformat.write(nb_, tmp_path / f"{change}.ipynb")
        changed = notebook_hash(tmp_path / f"{change}.ipynb")
        assert changed not in seen, change
        seen.add(changed)


def test_declared_parameters_are_read_from_the_parameters_cell(tmp_path):
    declared = inspect_notebook(write_notebook(tmp_path / "n.ipynb"))
    assert declared.defaults == {"fast": 10, "label": "demo", "rate": 0.5, "symbols": ["IBM"], "fail": False}


def test_the_template_notebook_declares_its_parameters():
    declared = inspect_notebook(Path(__file__).resolve().parents[3] / "notebooks" / "strategies" / "sma_cross.ipynb")
    assert declared.defaults["fast"] == 10 and declared.defaults["mode"] == "backtest"


def test_notebook_without_parameters_cell_is_refused_clearly(tmp_path):
    nb = write_notebook(tmp_path / "n.ipynb", params=None)
    with pytest.raises(NoParametersCellError, match="no code cell tagged 'parameters'"):
        inspect_notebook(nb)
    with pytest.raises(NoParametersCellError):
        submit(nb, {}, keys(tmp_path)[0], db=f"sqlite:///{tmp_path / 'q.db'}", data_dir=tmp_path)


def test_unknown_parameter_is_refused_with_the_valid_ones_listed(tmp_path):
    declared = inspect_notebook(write_notebook(tmp_path / "n.ipynb"))
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) slow .*valid parameters: fast, label, rate, symbols, fail"):
        validate_params(declared, {"slow": 30})


def test_parameter_values_must_fit_the_defaults_types(tmp_path):
    declared = inspect_notebook(write_notebook(tmp_path / "n.ipynb"))
    got = validate_params(declared, {"fast": "20", "rate": "1", "symbols": "IBM, MSFT", "fail": "true", "label": "x"})
    assert got == {"fast": 20, "rate": 1.0, "symbols": ["IBM", "MSFT"], "fail": True, "label": "x"}
    assert validate_params(declared, {"symbols": '["AAPL"]'}) == {"symbols": ["AAPL"]}
    with pytest.raises(ParameterError, match=r"parameter 'fast': 'ten' is not an integer \(the default is 10\)"):
        validate_params(declared, {"fast": "ten"})
    with pytest.raises(ParameterError, match="'fail'"):
        validate_params(declared, {"fail": 3})


def test_secret_looking_parameters_are_refused(tmp_path):
    nb = write_notebook(tmp_path / "n.ipynb", params=PARAMS + 'api_key = ""\n')
    declared = inspect_notebook(nb)
    with pytest.raises(ParameterError, match="api_key look like secrets"):
        validate_params(declared, {"api_key": "xyz"})


def test_invalid_cron_is_named():
    assert validate_cron("35 15 * * mon-fri") == "35 15 * * mon-fri"
    with pytest.raises(InvalidCronError, match=r"invalid cron '61 \* \* \* \*'"):
        validate_cron("61 * * * *")
    with pytest.raises(InvalidCronError, match="invalid cron 'every day'"):
        validate_cron("every day")


# --- real runs ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def succeeded(tmp_path_factory) -> tuple[Submission, Path]:
    """One real papermill run of the notebook; the tests below copy its record into their own store."""
    root = tmp_path_factory.mktemp("run")
    nb = write_notebook(root / "strategy.ipynb")
    author, _ = keys(root)
    add_user(root, "carol")
    sub = submit(nb, {"fast": "7", "symbols": "IBM,MSFT"}, author, db=f"sqlite:///{root / 'q.db'}", data_dir=root)
    return sub, nb


def fresh(succeeded, tmp_path) -> tuple[Submission, Path, str]:
    """The succeeded submission (and its signed record, and the users) copied into this test's store and
    data folder, its notebook copied into `tmp_path`."""
    sub, nb = succeeded
    copy = tmp_path / "strategy.ipynb"
    shutil.copy(nb, copy)
    shutil.copy(nb.parent / "users.toml", tmp_path / "users.toml")
    shutil.copytree(nb.parent / "keys", tmp_path / "keys")
    url = f"sqlite:///{tmp_path / 'q.db'}"
    row = {f: getattr(sub, f) for f in Submission.__dataclass_fields__}
    row.update(notebook=str(copy), params=json.dumps(sub.params), results=json.dumps(sub.results))
    with connect(f"sqlite:///{nb.parent / 'q.db'}").connect() as conn:
        signed = conn.execute(signed_reviews.select().where(signed_reviews.c.submission_id == sub.id)).first()
    with connect(url).begin() as conn:
        conn.execute(insert(submissions).values(**row))
        conn.execute(insert(signed_reviews).values(**{k: v for k, v in signed._mapping.items() if k != "id"}))
    return replace(sub, notebook=str(copy)), copy, url


def key(tmp_path: Path, name: str):
    return add_user(tmp_path, name)


def test_submit_runs_the_notebook_and_stores_its_results(succeeded):
    sub, nb = succeeded
    assert sub.status == "succeeded" and sub.error is None
    assert sub.code_hash == read_bundle(nb).code_hash
    assert (sub.bundle_dir / "notebook.ipynb").read_bytes() == nb.read_bytes()  # the snapshot that ran
    assert sub.params == {"fast": 7, "symbols": ["IBM", "MSFT"]}
    assert sub.results == {"results": {"fast": 7, "double": 14, "label": "demo", "symbols": ["IBM", "MSFT"]},
                           "nbval": {"passed": True, "checked_cells": [], "failures": {}, "run": "defaults"}}
    assert Path(sub.output_path).name == "output.ipynb" and Path(sub.output_path).parent.name == sub.id
    assert Path(sub.output_path).parent.parent.name == "submissions" and Path(sub.output_path).is_file()
    store = AuditLog(engine=connect(f"sqlite:///{nb.parent / 'q.db'}"))
    actions = [(e.actor, e.action) for e in store.entries(subject=sub.subject)]
    assert actions == [("alice", "submission.started"), ("alice", "submission.succeeded")]


def test_failing_notebook_is_stored_as_failed_with_its_error_and_output(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    nb = write_notebook(tmp_path / "strategy.ipynb")
    alice, bob = keys(tmp_path)
    sub = submit(nb, {"fail": True}, alice, db=url, data_dir=tmp_path)
    assert sub.status == "failed"
    assert "RuntimeError" in sub.error and "boom: told to fail" in sub.error
    saved = nbformat.read(sub.output_path, as_version=4)
    errors = [o for c in saved.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0]["evalue"] == "boom: told to fail"
    assert get_submission(sub.id, db=url) == sub and list_submissions(db=url) == [sub]
    with pytest.raises(ReviewError, match="is failed: only a succeeded submission can be approved"):
        approve(sub.id, bob, "0 16 * * mon-fri", db=url, schedules_dir=tmp_path / "schedules", data_dir=tmp_path)
    assert reject(sub.id, bob, "raises on its own data", db=url, data_dir=tmp_path).status == "rejected"
    actions = [e.action for e in AuditLog(url).entries(subject=sub.subject)]
    assert actions == ["submission.started", "submission.failed", "submission.approve_refused", "submission.rejected"]


def test_the_review_run_is_the_runner_process_of_scheduled_runs_and_is_stopped_at_its_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    pids = tmp_path / "pids.txt"
    body = f"import os, time\nopen({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{os.getppid()}}')\ntime.sleep(600)\n"
    nb = write_notebook(tmp_path / "strategy.ipynb", params="fail = False\n", body=body)
    sub = submit(nb, {}, keys(tmp_path)[0], db=url, data_dir=tmp_path, timeout_s=30)
    assert sub.status == "failed" and sub.error == "timeout: the run exceeded 30 s and was stopped"
    kernel, kernel_parent = (int(x) for x in pids.read_text().split())
    assert kernel_parent != os.getpid()  # the kernel's parent is the runner, a child of this process
    deadline = time.monotonic() + 60
    while pid_alive(kernel) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(kernel)  # the kernel went with its runner
    assert Path(sub.output_path).is_file()  # what ran until then is kept
    assert not any(p.name.endswith("-run") for p in Path(sub.output_path).parent.iterdir())  # the run's folder goes


def test_self_approval_is_refused_to_a_trader_even_when_asked_for(succeeded, tmp_path):
    sub, _, url = fresh(succeeded, tmp_path)
    alice = key(tmp_path, "alice")
    with pytest.raises(ReviewError, match="reviewer 'alice' is the author"):
        approve(sub.id, alice, "0 16 * * mon-fri", db=url, schedules_dir=tmp_path / "schedules", data_dir=tmp_path)
    with pytest.raises(ReviewError, match="only an admin may approve their own submission, and only with a reason"):
        approve(sub.id, alice, "0 16 * * mon-fri", allow_self_approval=True, reason="urgent", db=url,
                schedules_dir=tmp_path / "s", data_dir=tmp_path)
    assert get_submission(sub.id, db=url).status == "succeeded"
    assert not (tmp_path / "s").exists() and not (tmp_path / "approved").exists()


def test_invalid_cron_is_refused_at_approve_time_and_nothing_is_written(succeeded, tmp_path):
    sub, _, url = fresh(succeeded, tmp_path)
    with pytest.raises(InvalidCronError, match="invalid cron '0 25 \\* \\* \\*'"):
        approve(sub.id, key(tmp_path, "bob"), "0 25 * * *", db=url, schedules_dir=tmp_path / "schedules",
                data_dir=tmp_path)
    assert get_submission(sub.id, db=url).status == "succeeded"
    assert not (tmp_path / "schedules").exists()
    refused = AuditLog(url).entries(subject=sub.subject)[-1]
    assert (refused.actor, refused.action, refused.data["cron"]) == ("bob", "submission.approve_refused", "0 25 * * *")


def test_approval_writes_the_record_and_a_read_only_copy_that_the_gate_checks(succeeded, tmp_path):
    sub, nb, url = fresh(succeeded, tmp_path)
    sched = tmp_path / "schedules"
    record = approve(sub.id, key(tmp_path, "bob"), "35 15 * * mon-fri", limits={"max_position": 500}, db=url,
                     schedules_dir=sched, data_dir=tmp_path)
    file = sched / "strategy.toml"
    data = tomllib.loads(file.read_text())
    assert data["approved_hash"] == sub.code_hash == read_bundle(nb).code_hash
    assert (data["job_id"], data["version"], data["status"], data["mode"]) == ("strategy", 1, "active", "paper")
    assert (data["cron"], data["timezone"], data["trading_days_only"], data["concurrency"]) == (
        "35 15 * * mon-fri", "America/New_York", True, 1)
    assert data["params"] == {"fast": 7, "symbols": ["IBM", "MSFT"]} and data["limits"] == {"max_position": 500}
    assert (data["reviewer"], data["author"], data["notebook"]) == ("bob", "alice", str(nb))
    assert read_schedule(file) == record
    assert get_submission(sub.id, db=url).status == "approved"
    copy = approved_dir(tmp_path, sub.code_hash)
    assert (copy / "notebook.ipynb").read_bytes() == nb.read_bytes()
    assert (copy.stat().st_mode & 0o777, (copy / "notebook.ipynb").stat().st_mode & 0o777) == (0o555, 0o444)

    engine = connect(url)
    assert check_gate(file, db=engine, data_dir=tmp_path).code_hash == sub.code_hash
    edit_cell(nb, 2, BODY + "x = 1\n")  # the working notebook is not what runs
    assert check_gate(record, db=engine, data_dir=tmp_path).notebook == (copy / "notebook.ipynb").read_bytes()

    gone = revoke("strategy", key(tmp_path, "carol"), "superseded", db=url, schedules_dir=sched, data_dir=tmp_path)
    assert (gone.version, gone.status, gone.revoked_by) == (2, "revoked", "carol")
    assert read_schedule(file) == gone
    audit = AuditLog(url)
    with pytest.raises(GateRefused, match="job strategy is revoked"):
        check_gate(file, db=engine, data_dir=tmp_path, audit=audit)
    assert audit.entries(subject="job/strategy")[-1].action == "job.gate_refused"
    assert get_submission(sub.id, db=url).status == "revoked"
    trail = [(e.actor, e.action) for e in audit.entries(subject=sub.subject)]
    assert trail == [("bob", "submission.approved"), ("carol", "submission.revoked")]


def test_a_submission_can_be_decided_only_once(succeeded, tmp_path):
    sub, _, url = fresh(succeeded, tmp_path)
    bob = key(tmp_path, "bob")
    reject(sub.id, bob, "needs a longer sample", db=url, data_dir=tmp_path)
    with pytest.raises(ReviewError, match="is rejected"):
        approve(sub.id, key(tmp_path, "carol"), "0 16 * * *", db=url, schedules_dir=tmp_path / "schedules",
                data_dir=tmp_path)
    with pytest.raises(ReviewError, match="needs a reason"):
        reject(sub.id, bob, " ", db=url, data_dir=tmp_path)


def test_approval_copies_what_was_submitted_even_when_the_notebook_changed_since(succeeded, tmp_path):
    sub, nb, url = fresh(succeeded, tmp_path)
    submitted = nb.read_bytes()
    edit_cell(nb, 2, BODY + "y = 2\n")
    record = approve(sub.id, key(tmp_path, "bob"), "0 16 * * *", db=url, schedules_dir=tmp_path / "schedules",
                     data_dir=tmp_path)
    assert record.approved_hash == sub.code_hash != read_bundle(nb).code_hash
    assert (approved_dir(tmp_path, sub.code_hash) / "notebook.ipynb").read_bytes() == submitted


def test_an_approval_limit_the_engine_would_not_apply_is_refused_naming_the_valid_ones(succeeded, tmp_path):
    sub, _, url = fresh(succeeded, tmp_path)
    with pytest.raises(ReviewError, match=r"limit 'max_drawdown' is not one the engine applies to a job; valid "
                                          r"limits: capital .*max_order_quantity .*max_position"):
        approve(sub.id, key(tmp_path, "bob"), "35 15 * * mon-fri", limits={"max_drawdown": 0.2}, db=url,
                schedules_dir=tmp_path / "schedules", data_dir=tmp_path)
    with pytest.raises(ReviewError, match="limit capital: expected a number > 0"):
        approve(sub.id, key(tmp_path, "bob"), "35 15 * * mon-fri", limits={"capital": -5}, db=url,
                schedules_dir=tmp_path / "s", data_dir=tmp_path)
    assert get_submission(sub.id, db=url).status == "succeeded"


def test_a_submission_whose_run_meets_another_audit_writer_is_recorded_all_the_same(tmp_path):
    """The engine, the dashboards and the scheduler append to the one audit chain while a review run
    lasts: the submission's entries are chained after theirs (`make up` once died of this)."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    body = ("from qlcore.audit.log import AuditLog\n"
            "AuditLog(store).record('user:engine', 'engine.meanwhile', 'account')\n" + BODY)
    nb = write_notebook(tmp_path / "n.ipynb", params=PARAMS + 'store = ""\n', body=body)
    sub = submit(nb, {"store": url}, keys(tmp_path)[0], db=url, data_dir=tmp_path)
    assert sub.status == "succeeded", sub.error
    log = AuditLog(url)
    actions = [e.action for e in log.entries()]
    assert "engine.meanwhile" in actions and actions[-1].startswith("submission.")
    assert log.verify().ok
