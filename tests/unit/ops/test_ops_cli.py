"""The review commands as `qlcore` registers them: bad input becomes a `UserError` naming the problem."""
from __future__ import annotations

import typer
from typer.testing import CliRunner

from qlcore.cli import UserError
from qlcore.ops.cli import register


def make_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def notebook(path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cell = new_code_cell("fast = 10\nslow = 30\n")
    cell.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[cell, new_code_cell("fast + slow")]), path)
    return path


def test_submit_with_an_unknown_parameter_fails_before_running(tmp_path):
    nb = notebook(tmp_path / "n.ipynb")
    result = CliRunner().invoke(
        make_app(), ["submit", str(nb), "-p", "fats=5", "--author", "alice", "--db", f"sqlite:///{tmp_path / 'q.db'}"]
    )
    assert isinstance(result.exception, UserError)
    assert "unknown parameter(s) fats" in str(result.exception) and "valid parameters: fast, slow" in str(result.exception)


def test_approve_of_an_unknown_submission_and_an_empty_list(tmp_path):
    db = f"sqlite:///{tmp_path / 'q.db'}"
    result = CliRunner().invoke(make_app(), ["approve", "sub-x", "--reviewer", "bob", "--schedule", "0 16 * * *", "--db", db])
    assert isinstance(result.exception, UserError) and "no submission 'sub-x'" in str(result.exception)
    listed = CliRunner().invoke(make_app(), ["submissions", "--db", db])
    assert listed.exit_code == 0 and "no submissions yet" in listed.output


def test_every_review_command_is_registered():
    names = {c.name for c in make_app().registered_commands}
    assert names == {"submit", "approve", "reject", "revoke", "submissions", "scheduler"}
    groups = {g.name: {c.name for c in g.typer_instance.registered_commands} for g in make_app().registered_groups}
    assert groups == {"jobs": {"list", "history", "run-now", "pause", "resume", "alerts"}}
