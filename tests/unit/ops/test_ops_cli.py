"""The review commands as `qlcore` registers them: bad input becomes a `UserError` naming the problem."""
from __future__ import annotations

import typer
from signed_jobs import keys
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
    keys(tmp_path)
    result = CliRunner().invoke(
        make_app(), ["submit", str(nb), "-p", "fats=5", "--user", "alice", "--db", f"sqlite:///{tmp_path / 'q.db'}",
                     "--data-dir", str(tmp_path)]
    )
    assert isinstance(result.exception, UserError)
    assert "unknown parameter(s) fats" in str(result.exception) and "valid parameters: fast, slow" in str(result.exception)


def test_approve_of_an_unknown_submission_and_an_empty_list(tmp_path):
    db = f"sqlite:///{tmp_path / 'q.db'}"
    keys(tmp_path)
    args = ["--db", db, "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(make_app(), ["approve", "sub-20260101-0000abcd", "--user", "bob", "--schedule",
                                             "0 16 * * *", *args])
    assert isinstance(result.exception, UserError) and "no submission 'sub-20260101-0000abcd'" in str(result.exception)
    result = CliRunner().invoke(make_app(), ["approve", "../../x", "--user", "bob", "--schedule", "0 16 * * *", *args])
    assert isinstance(result.exception, UserError) and "submission id '../../x' is not valid" in str(result.exception)
    listed = CliRunner().invoke(make_app(), ["submissions", "--db", db])
    assert listed.exit_code == 0 and "no submissions yet" in listed.output


def test_a_user_without_a_signing_key_cannot_submit_or_approve(tmp_path, monkeypatch):
    monkeypatch.delenv("QLCORE_KEY_FILE", raising=False)
    nb = notebook(tmp_path / "n.ipynb")
    args = ["--db", f"sqlite:///{tmp_path / 'q.db'}", "--data-dir", str(tmp_path)]
    for command in (["submit", str(nb), "--user", "mallory"],
                    ["approve", "sub-20260101-0000abcd", "--user", "mallory", "--schedule", "0 16 * * *"]):
        result = CliRunner().invoke(make_app(), [*command, *args])
        assert isinstance(result.exception, UserError), result.output
        assert "no usable signing key for 'mallory'" in str(result.exception)
    assert not (tmp_path / "submissions").exists()


def test_every_review_command_is_registered():
    names = {c.name for c in make_app().registered_commands}
    assert names == {"submit", "approve", "reject", "revoke", "submissions", "scheduler"}
    groups = {g.name: {c.name for c in g.typer_instance.registered_commands} for g in make_app().registered_groups}
    assert groups == {"jobs": {"list", "history", "run-now", "pause", "resume", "alerts"}}
