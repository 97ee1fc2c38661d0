"""Four eyes that hold: the attacks found on the review gate, each refused.

Author and reviewer were strings typed on the command line; the hash covered code only, so a tag
changed what ran under the approved hash; the working file was read again after it was hashed;
a hand-written schedule file ran; a job id became a path; an imported helper changed after
approval ran under the approved hash; a file that was not a notebook was quoted into the audit
log. Two real kernel runs (the swapped copy, the changed helper); the rest needs none.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from signed_jobs import add_user, approved_job, keys, stored_submission

from qlcore.audit.log import AuditLog
from qlcore.control.identity import SigningKey
from qlcore.control.reviews import IdentityError
from qlcore.control.users import user_key_file
from qlcore.ops import runs as runs_module
from qlcore.ops.bundles import approved_dir, read_bundle
from qlcore.ops.notebooks import NotANotebookError, notebook_hash
from qlcore.ops.runs import RunRefused, execute_run, list_runs
from qlcore.ops.schedules import (
    GateRefused,
    InvalidIdentifierError,
    ScheduleRecord,
    check_gate,
    write_schedule,
)
from qlcore.ops.submissions import (
    ReviewError,
    approve,
    get_submission,
    list_submissions,
    revoke,
    submit,
)
from qlcore.research.notebook import read_records
from qlcore.store.db import connect

CRON = "0 16 * * mon-fri"
RECORD = "from qlcore.research.notebook import record\n"


def job_notebook(path: Path, body: str, *, params: str = "qty = 100\n") -> Path:
    first = new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[new_markdown_cell("# job"), first, new_code_cell(body)]), path)
    return path


def url_of(root: Path) -> str:
    return f"sqlite:///{root / 'q.db'}"


def run(root: Path, job_id: str = "job"):
    return execute_run(job_id, schedules_dir=root / "schedules", db=url_of(root), data_dir=root)


# --- who approves ------------------------------------------------------------------------------------
def test_the_author_under_another_spelling_is_the_author(tmp_path):
    alice, _ = keys(tmp_path)
    nb = job_notebook(tmp_path / "n.ipynb", "x = 1\n")
    sub_id = stored_submission(tmp_path, nb, alice, db=url_of(tmp_path))
    as_capital = SigningKey.load("Alice", user_key_file(tmp_path / "users.toml", "alice"))  # `--reviewer Alice`
    with pytest.raises(ReviewError, match="reviewer 'alice' is the author of submission"):
        approve(sub_id, as_capital, CRON, db=url_of(tmp_path), schedules_dir=tmp_path / "schedules",
                data_dir=tmp_path)
    # naming someone else while holding one's own key proves nothing either
    claims_bob = SigningKey.load("bob", user_key_file(tmp_path / "users.toml", "alice"))
    with pytest.raises(IdentityError, match="the signing key given for 'bob' is not theirs"):
        approve(sub_id, claims_bob, CRON, db=url_of(tmp_path), schedules_dir=tmp_path / "schedules",
                data_dir=tmp_path)
    assert get_submission(sub_id, db=url_of(tmp_path)).status == "succeeded"
    assert not (tmp_path / "schedules").exists() and not (tmp_path / "approved").exists()
    refusals = [e for e in AuditLog(url_of(tmp_path)).entries() if e.action == "submission.approve_refused"]
    assert [e.actor for e in refusals] == ["alice", "bob"]  # the second is what the holder claimed


def test_self_approval_needs_an_admin_and_a_reason_and_is_audited_as_such(tmp_path):
    alice, _ = keys(tmp_path)
    root = add_user(tmp_path, "root", "admin")
    nb = job_notebook(tmp_path / "n.ipynb", "x = 1\n")
    url, sched = url_of(tmp_path), tmp_path / "schedules"
    by_alice = stored_submission(tmp_path, nb, alice, db=url)
    with pytest.raises(ReviewError, match="only an admin may approve their own submission"):
        approve(by_alice, alice, CRON, allow_self_approval=True, reason="the desk is empty", db=url,
                schedules_dir=sched, data_dir=tmp_path)
    by_root = stored_submission(tmp_path, nb, root, db=url)
    with pytest.raises(ReviewError, match="reviewer 'root' is the author"):
        approve(by_root, root, CRON, db=url, schedules_dir=sched, data_dir=tmp_path)
    with pytest.raises(ReviewError, match="and only with a reason"):
        approve(by_root, root, CRON, allow_self_approval=True, reason="  ", db=url, schedules_dir=sched,
                data_dir=tmp_path)
    record = approve(by_root, root, CRON, allow_self_approval=True, reason="market-wide outage fix", job_id="fix",
                     db=url, schedules_dir=sched, data_dir=tmp_path)
    assert (record.author, record.reviewer) == ("root", "root")
    entry = AuditLog(url).entries(subject=f"submission/{by_root}")[-1]
    assert (entry.actor, entry.action) == ("root", "submission.approved")
    assert (entry.data["self_approved"], entry.data["reason"]) == (True, "market-wide outage fix")
    assert check_gate(record, db=connect(url), data_dir=tmp_path).code_hash == record.approved_hash


def test_a_viewer_cannot_approve(tmp_path):
    alice, _ = keys(tmp_path)
    eve = add_user(tmp_path, "eve", "viewer")
    sub_id = stored_submission(tmp_path, job_notebook(tmp_path / "n.ipynb", "x = 1\n"), alice, db=url_of(tmp_path))
    with pytest.raises(ReviewError, match="eve is a viewer: to approve needs a trader or admin"):
        approve(sub_id, eve, CRON, db=url_of(tmp_path), schedules_dir=tmp_path / "schedules", data_dir=tmp_path)


# --- what the approval covers -------------------------------------------------------------------------
@pytest.mark.parametrize("tag", ["skip-execution", "raises-exception"])
def test_a_tag_added_after_approval_is_refused_at_the_gate(tmp_path, tag):
    nb = job_notebook(tmp_path / "n.ipynb", "raise RuntimeError('a guard cell')\n")
    record = approved_job(tmp_path, nb)
    approved = approved_dir(tmp_path, record.approved_hash) / "notebook.ipynb"
    tagged = nbformat.read(approved, as_version=4)
    tagged.cells[2].metadata["tags"] = [tag]  # the code is unchanged: today's code-only hash did not see this
    approved.chmod(0o644)
    nbformat.write(tagged, approved)
    assert notebook_hash(approved) != notebook_hash(nb)
    with pytest.raises(GateRefused, match=f"was changed: it hashes to .*, approved {record.approved_hash}"):
        check_gate(record, db=connect(url_of(tmp_path)), data_dir=tmp_path)
    refused = run(tmp_path)
    assert refused.status == "refused" and refused.output_path is None
    assert AuditLog(url_of(tmp_path)).entries(subject="job/job")[-1].action == "job.gate_refused"


def test_a_notebook_swapped_between_the_check_and_the_run_is_not_what_runs(tmp_path, monkeypatch):
    nb = job_notebook(tmp_path / "n.ipynb", RECORD + "record('sold', qty)\n")
    record = approved_job(tmp_path, nb, params={"qty": 100})
    swapped = job_notebook(tmp_path / "evil.ipynb", RECORD + "record('sold', 1_000_000)\n")
    real_gate = runs_module.check_gate

    def gate_then_swap(*args, **kwargs):
        checked = real_gate(*args, **kwargs)
        copy = approved_dir(tmp_path, record.approved_hash) / "notebook.ipynb"
        copy.chmod(0o644)
        copy.write_bytes(swapped.read_bytes())  # an attacker acting in the window after the check
        return checked

    monkeypatch.setattr(runs_module, "check_gate", gate_then_swap)
    done = run(tmp_path)
    assert done.status == "succeeded", done.error
    assert read_records(done.output_path) == {"sold": 100}  # the bytes that were checked ran
    assert done.code_hash == record.approved_hash


def test_an_imported_module_changed_after_approval_does_not_run_the_approved_copy_does(tmp_path):
    (tmp_path / "sizing.py").write_text("QTY = 100\n")
    nb = job_notebook(tmp_path / "n.ipynb", "import sizing\n" + RECORD + "record('sold', sizing.QTY)\n")
    record = approved_job(tmp_path, nb)
    assert sorted(read_bundle(nb).modules) == ["sizing.py"]
    assert (approved_dir(tmp_path, record.approved_hash) / "sizing.py").read_text() == "QTY = 100\n"
    (tmp_path / "sizing.py").write_text("QTY = 1_000_000\n")  # the attack: the helper, not the notebook
    assert read_bundle(nb).code_hash != record.approved_hash  # a new submission would need a new approval
    done = run(tmp_path)
    assert done.status == "succeeded", done.error
    assert read_records(done.output_path) == {"sold": 100}


# --- schedule records are only as good as their signed approval -----------------------------------------
def test_a_hand_written_schedule_with_the_right_hash_is_refused_and_audited(tmp_path):
    nb = job_notebook(tmp_path / "n.ipynb", "x = 1\n")
    keys(tmp_path)
    bundle = read_bundle(nb)
    bundle.write(approved_dir(tmp_path, bundle.code_hash), read_only=True)  # even the copy is in place
    write_schedule(tmp_path / "schedules", ScheduleRecord(
        job_id="forged", version=1, status="active", submission_id="sub-20260102-0000abcd", notebook=str(nb),
        approved_hash=bundle.code_hash, mode="live", cron="* * * * *", reviewer="bob", author="alice",
        approved_at="2026-01-02T00:00:00+00:00"))
    refused = run(tmp_path, "forged")
    assert refused.status == "refused"
    assert "job 'forged' has no signed approval in the store" in refused.error
    entry = AuditLog(url_of(tmp_path)).entries(subject="job/forged")[-1]
    assert entry.action == "job.gate_refused" and "no signed approval" in entry.data["reason"]


def test_a_schedule_edited_after_approval_is_refused_naming_the_fields(tmp_path):
    nb = job_notebook(tmp_path / "n.ipynb", "x = 1\n")
    approved_job(tmp_path, nb, limits={"max_position": 100})
    file = tmp_path / "schedules" / "job.toml"
    text = file.read_text().replace('mode = "paper"', 'mode = "live"').replace("max_position = 100",
                                                                                "max_position = 1000000")
    file.write_text(text)
    refused = run(tmp_path)
    assert refused.status == "refused" and "does not match its signed approval" in refused.error
    assert "mode ('live' in the file, 'paper' approved)" in refused.error
    assert "limits ({'max_position': 1000000} in the file, {'max_position': 100} approved)" in refused.error


# --- ids that become paths -------------------------------------------------------------------------------
def test_a_traversal_job_id_is_refused_naming_the_field_and_nothing_is_written(tmp_path):
    alice, bob = keys(tmp_path)
    nb = job_notebook(tmp_path / "n.ipynb", "x = 1\n")
    url = url_of(tmp_path)
    sub_id = stored_submission(tmp_path, nb, alice, db=url)
    (tmp_path / "deep" / "schedules").mkdir(parents=True)
    with pytest.raises(InvalidIdentifierError, match=r"job id '\.\./\.\./x' is not valid"):
        approve(sub_id, bob, CRON, job_id="../../x", db=url, schedules_dir=tmp_path / "deep" / "schedules",
                data_dir=tmp_path)
    assert [p.name for p in tmp_path.rglob("*.toml")] == ["users.toml"] and not (tmp_path / "approved").exists()
    assert get_submission(sub_id, db=url).status == "succeeded"
    with pytest.raises(RunRefused, match=r"job id '\.\./\.\./x' is not valid"):
        execute_run("../../x", schedules_dir=tmp_path / "deep" / "schedules", db=url, data_dir=tmp_path)
    with pytest.raises(InvalidIdentifierError, match="job id"):
        revoke("../../x", bob, "no", db=url, schedules_dir=tmp_path / "deep" / "schedules", data_dir=tmp_path)
    with pytest.raises(InvalidIdentifierError, match=r"submission id '\.\./\.\./x' is not valid"):
        approve("../../x", bob, CRON, db=url, schedules_dir=tmp_path / "schedules", data_dir=tmp_path)
    assert list_runs(db=url) == []


# --- what may be submitted ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, content, why", [
    ("notes.ipynb", b"PRIVATE-NOTE password=hunter2 do not share\n", "it is not JSON"),
    ("blob.ipynb", b"\x89PNG\r\n\x1a\nSECRETBYTES\xff\xfe", "it is not UTF-8 text"),
    ("config.ipynb", json.dumps({"cells": "SECRET-VALUE-42", "nbformat": 4}).encode(), "not nbformat 4"),
])
def test_a_file_that_is_not_a_notebook_is_refused_without_quoting_it(tmp_path, name, content, why):
    alice, _ = keys(tmp_path)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NotANotebookError, match=why) as refused:
        submit(path, {}, alice, db=url_of(tmp_path), data_dir=tmp_path)
    assert "SECRET" not in str(refused.value) and "hunter2" not in str(refused.value)
    (entry,) = AuditLog(url_of(tmp_path)).entries()
    assert entry.action == "submission.refused" and why in entry.data["reason"]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("q.db*"))
    for secret in (b"SECRET", b"hunter2", b"PRIVATE-NOTE"):
        assert secret not in stored
    assert list_submissions(db=url_of(tmp_path)) == [] and not (tmp_path / "submissions").exists()
