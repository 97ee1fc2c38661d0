"""One scheduled run of an approved notebook, end to end with a real kernel in a child process.

The gate (the approved copy runs, whatever happens to the working notebook; a tampered copy is
refused), failure, timeout, retries, pause, and secrets kept out of the archive. Jobs are approved
for real here (`signed_jobs.approved_job`), skipping only the submission's own run.
"""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from signed_jobs import approved_job

from qlcore.audit.log import AuditLog
from qlcore.ops.bundles import approved_dir, read_bundle
from qlcore.ops.controls import is_paused, set_paused
from qlcore.ops.runs import RunRefused, execute_run, get_run, job_alerts, list_runs
from qlcore.ops.schedules import ScheduleRecord
from qlcore.research.notebook import read_records
from qlcore.store.scrub import secret_values


def write_notebook(path: Path, *cells: str, params: str = "fail = False\n") -> Path:
    first = new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# a job"), first, *[new_code_cell(c) for c in cells]])
    nbformat.write(nb, path)
    return path


def make_job(root: Path, nb: Path, job_id: str = "job", db: str | None = None, **fields) -> ScheduleRecord:
    return approved_job(root, nb, job_id, db=db, **fields)


def run(root: Path, job_id: str = "job", url: str | None = None, **kw):
    url = url or f"sqlite:///{root / 'q.db'}"
    return execute_run(job_id, schedules_dir=root / "schedules", db=url, data_dir=root, **kw)


RECORDS = ("from qlcore.research.notebook import record\n"
           "record('seen', {'job_id': job_id, 'mode': mode, 'run_id': run_id})\n")


def test_a_run_gets_the_approved_parameters_and_its_metadata_and_is_archived_read_only(tmp_path, store_url):
    params = "fail = False\njob_id = ''\nmode = 'research'\nrun_id = ''\n"
    nb = write_notebook(tmp_path / "n.ipynb", RECORDS, params=params)
    url = store_url
    make_job(tmp_path, nb, db=url, params={"fail": False})
    done = run(tmp_path, url=url)
    assert (done.status, done.attempt, done.trigger) == ("succeeded", 1, "schedule")
    assert done.error is None and done.failing_cell is None
    out = Path(done.output_path)
    assert out.parent == tmp_path / "runs" / "job" and out.suffix == ".ipynb"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o400  # never edited, read by its owner only
    assert read_records(out) == {"seen": {"job_id": "job", "mode": "paper", "run_id": done.run_id}}
    assert done.code_hash == done.approved_hash == read_bundle(nb).code_hash
    assert done.params == {"fail": False, "job_id": "job", "code_hash": done.approved_hash, "mode": "paper",
                           "run_id": done.run_id}
    assert done.duration_ms > 0 and list_runs("job", db=url) == [done]
    actions = [e.action for e in AuditLog(url).entries(subject="job/job")]
    assert actions == ["job.run_started", "job.run_succeeded"]


def test_the_approved_copy_runs_whatever_the_working_notebook_says_and_a_tampered_copy_is_refused(tmp_path):
    nb = write_notebook(tmp_path / "n.ipynb", "from qlcore.research.notebook import record\nrecord('x', 1)\n")
    approved = make_job(tmp_path, nb).approved_hash
    edited = nbformat.read(nb, as_version=4)
    edited.cells[2].source = "raise RuntimeError('edited after approval')\n"
    nbformat.write(edited, nb)
    done = run(tmp_path)
    assert done.status == "succeeded" and read_records(done.output_path) == {"x": 1}  # the approved bytes ran
    assert done.code_hash == approved

    copy = approved_dir(tmp_path, approved) / "notebook.ipynb"
    copy.chmod(0o644)  # whoever can write the data folder could do this
    copy.write_bytes(nb.read_bytes())
    refused = run(tmp_path)
    assert refused.status == "refused" and refused.output_path is None and refused.duration_ms == 0
    assert (refused.approved_hash, refused.code_hash) == (approved, "")
    assert f"was changed: it hashes to {read_bundle(nb).code_hash}, approved {approved}" in refused.error
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert job_alerts(db=url) == [refused]
    entry = AuditLog(url).entries(subject="job/job")[-1]
    assert entry.action == "job.gate_refused" and entry.data["approved_hash"] == approved
    assert len(list(tmp_path.joinpath("runs", "job").iterdir())) == 1  # only the run before the tampering


def test_a_failing_notebook_is_recorded_with_its_cell_and_error_and_keeps_its_output(tmp_path):
    nb = write_notebook(tmp_path / "n.ipynb", "x = 1\n", "if fail:\n    raise RuntimeError('boom at 3 a.m.')\n")
    make_job(tmp_path, nb, params={"fail": True})
    failed = run(tmp_path)
    assert failed.status == "failed" and failed.failing_cell == 3
    assert failed.error == "cell 3: RuntimeError: boom at 3 a.m."
    saved = nbformat.read(failed.output_path, as_version=4)
    errors = [o for c in saved.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert [e["evalue"] for e in errors] == ["boom at 3 a.m."]
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert [a.run_id for a in job_alerts(db=url)] == [failed.run_id]
    assert AuditLog(url).entries(subject="job/job")[-1].data["failing_cell"] == 3


def test_a_failed_attempt_is_retried_as_the_record_says(tmp_path):
    # fails on the first attempt only: the attempts are counted in a file beside the notebook
    body = (f"from pathlib import Path\nn = Path({str(tmp_path / 'attempts.txt')!r})\nn.write_text(str(int(n.read_text() or 0) + 1) "
            "if n.exists() else '1')\nif n.read_text() == '1':\n    raise RuntimeError('first attempt fails')\n")
    nb = write_notebook(tmp_path / "n.ipynb", body)
    make_job(tmp_path, nb, retries=2)
    last = run(tmp_path)
    runs = list_runs("job", db=f"sqlite:///{tmp_path / 'q.db'}")
    assert [(r.attempt, r.status) for r in reversed(runs)] == [(1, "failed"), (2, "succeeded")]
    assert last == runs[0] and (tmp_path / "attempts.txt").read_text() == "2"
    assert Path(last.output_path).name.endswith("-attempt2.ipynb")


def test_a_hanging_notebook_is_stopped_at_its_timeout_with_its_kernel(tmp_path):
    pid_file = tmp_path / "kernel.pid"
    body = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    nb = write_notebook(tmp_path / "n.ipynb", "x = 1\n", body)
    # long enough for a kernel to start and reach cell 3 on a loaded 2-core machine (4 s was not)
    make_job(tmp_path, nb, timeout_s=30)
    stopped = run(tmp_path)
    assert stopped.status == "timeout" and stopped.failing_cell == 3
    assert stopped.error == "timeout: the run exceeded 30 s and was stopped"
    saved = nbformat.read(stopped.output_path, as_version=4)  # as papermill last saved it: cell 3 running
    assert saved.cells[-1].metadata["papermill"]["status"] == "running"
    kernel = int(pid_file.read_text())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _alive(kernel):
        time.sleep(0.2)
    assert not _alive(kernel), "the kernel outlived its run"
    assert job_alerts(db=f"sqlite:///{tmp_path / 'q.db'}")[0].status == "timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_secrets_come_from_the_environment_and_never_reach_the_archive_or_the_record(tmp_path, monkeypatch):
    secret = "s3cr3t-7f9a2c-value"
    monkeypatch.setenv("QLCORE_BROKER_API_KEY", secret)
    body = ("import os\nkey = os.environ['QLCORE_BROKER_API_KEY']\nprint('using key', key)\n"
            "from qlcore.research.notebook import record\nrecord('key_length', len(key))\n"
            "raise RuntimeError(f'broker refused key {key}')\n")
    nb = write_notebook(tmp_path / "n.ipynb", body)
    make_job(tmp_path, nb)
    failed = run(tmp_path)
    assert failed.status == "failed" and "broker refused key ***" in failed.error
    text = Path(failed.output_path).read_text()
    assert read_records(failed.output_path) == {"key_length": len(secret)}  # the notebook did get it
    assert secret not in text and "using key ***" in text
    assert secret not in json.dumps([r.__repr__() for r in list_runs(db=f"sqlite:///{tmp_path / 'q.db'}")])
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("q.db*"))  # the database and its WAL
    assert secret.encode() not in stored
    assert secret in secret_values()


def test_a_secret_looking_parameter_in_a_record_refuses_the_run(tmp_path):
    nb = write_notebook(tmp_path / "n.ipynb", "x = 1\n", params="api_key = ''\n")
    make_job(tmp_path, nb, params={"api_key": "abcd"})
    refused = run(tmp_path)
    assert refused.status == "refused" and "api_key look like secrets" in refused.error


def test_a_paused_job_does_not_run_and_stays_paused_for_a_new_process(tmp_path):
    nb = write_notebook(tmp_path / "n.ipynb", "x = 1\n")
    make_job(tmp_path, nb)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    set_paused("job", True, "carol", "broker maintenance", db=url)
    with pytest.raises(RunRefused, match="job job is paused"):
        run(tmp_path)
    assert list_runs(db=url) == [] and is_paused("job", db=url)
    set_paused("job", False, "carol", db=url)
    assert not is_paused("job", db=url)
    trail = [(e.actor, e.action) for e in AuditLog(url).entries(subject="job/job")]
    assert trail == [("carol", "job.paused"), ("scheduler", "job.run_skipped"), ("carol", "job.resumed")]


def test_a_job_without_a_record_is_refused_clearly(tmp_path):
    with pytest.raises(RunRefused, match="no schedule record for job 'ghost'"):
        run(tmp_path, "ghost")
    with pytest.raises(LookupError, match="no run 'run-x'"):
        get_run("run-x", db=f"sqlite:///{tmp_path / 'q.db'}")
