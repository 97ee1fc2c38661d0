"""The demo job of `qlcore scheduler --demo` (what `make up` starts): the template notebook, approved.

On first use the template job notebook (`notebooks/jobs/daily_rebalance.ipynb`) is submitted by
``demo-quant`` and approved by ``demo-reviewer`` as a paper job that fires every hour on every day.
Its record lives under the data folder (``data/demo/schedules/``), never in the repository's
``schedules/``, so that demo approvals cannot reach a real scheduler. When the notebook changed
since, it is submitted and approved again (a new version of the record).
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from qlcore.ops.notebooks import notebook_hash
from qlcore.ops.schedules import ScheduleRecord, read_schedule, schedule_path
from qlcore.ops.submissions import approve, submit
from qlcore.store.db import project_data_dir

DEMO_JOB = "demo_rebalance"
DEMO_CRON = "0 * * * *"
TEMPLATE = Path(__file__).resolve().parents[2] / "notebooks" / "jobs" / "daily_rebalance.ipynb"


def demo_schedules_dir(data_dir: Path | None = None) -> Path:
    return (data_dir or project_data_dir()) / "demo" / "schedules"


def ensure_demo_job(*, db: str | Engine | None = None, schedules_dir: Path | None = None,
                    data_dir: Path | None = None) -> ScheduleRecord:
    """The demo job's active record, submitted and approved now if there is none for the current notebook."""
    folder = schedules_dir or demo_schedules_dir(data_dir)
    file = schedule_path(folder, DEMO_JOB)
    if file.is_file():
        record = read_schedule(file)
        if record.status == "active" and record.approved_hash == notebook_hash(TEMPLATE):
            return record
    sub = submit(TEMPLATE, {}, "demo-quant", db=db, data_dir=data_dir)
    if sub.status != "succeeded":
        raise RuntimeError(f"the demo job notebook failed when submitted ({sub.id}): {sub.error}")
    return approve(sub.id, "demo-reviewer", DEMO_CRON, "paper", job_id=DEMO_JOB, trading_days_only=False, db=db,
                   schedules_dir=folder)
