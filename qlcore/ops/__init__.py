"""Ops: notebook submission, review and approval, schedules as data, the gate, the scheduler and its runs.

Names are imported on first use, so that `qlcore --help` stays quick.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from qlcore._lazy import lazy_exports

if TYPE_CHECKING:
    from qlcore.ops.controls import set_paused
    from qlcore.ops.notebooks import (
        NoParametersCellError,
        NotebookParameters,
        ParameterError,
        inspect_notebook,
        notebook_hash,
        validate_params,
    )
    from qlcore.ops.outputs import OutputsVerdict, check_outputs
    from qlcore.ops.runs import JobRun, RunRefused, execute_run, job_alerts, list_runs
    from qlcore.ops.scheduler import JobScheduler, SchedulerConfig, run_job
    from qlcore.ops.schedules import (
        GateRefused,
        ScheduleRecord,
        check_gate,
        read_schedule,
        validate_cron,
    )
    from qlcore.ops.submissions import (
        ReviewError,
        Submission,
        UnknownSubmissionError,
        approve,
        get_submission,
        list_submissions,
        reject,
        revoke,
        submit,
    )

_EXPORTS = {
    "NoParametersCellError": "notebooks",
    "NotebookParameters": "notebooks",
    "ParameterError": "notebooks",
    "inspect_notebook": "notebooks",
    "notebook_hash": "notebooks",
    "validate_params": "notebooks",
    "set_paused": "controls",
    "OutputsVerdict": "outputs",
    "check_outputs": "outputs",
    "JobRun": "runs",
    "RunRefused": "runs",
    "execute_run": "runs",
    "job_alerts": "runs",
    "list_runs": "runs",
    "JobScheduler": "scheduler",
    "SchedulerConfig": "scheduler",
    "run_job": "scheduler",
    "GateRefused": "schedules",
    "ScheduleRecord": "schedules",
    "check_gate": "schedules",
    "read_schedule": "schedules",
    "validate_cron": "schedules",
    "ReviewError": "submissions",
    "Submission": "submissions",
    "UnknownSubmissionError": "submissions",
    "approve": "submissions",
    "get_submission": "submissions",
    "list_submissions": "submissions",
    "reject": "submissions",
    "revoke": "submissions",
    "submit": "submissions",
}
__all__ = [
    "GateRefused",
    "JobRun",
    "JobScheduler",
    "NoParametersCellError",
    "NotebookParameters",
    "OutputsVerdict",
    "ParameterError",
    "ReviewError",
    "RunRefused",
    "ScheduleRecord",
    "SchedulerConfig",
    "Submission",
    "UnknownSubmissionError",
    "approve",
    "check_gate",
    "check_outputs",
    "execute_run",
    "get_submission",
    "inspect_notebook",
    "job_alerts",
    "list_runs",
    "list_submissions",
    "notebook_hash",
    "read_schedule",
    "reject",
    "revoke",
    "run_job",
    "set_paused",
    "submit",
    "validate_cron",
    "validate_params",
]


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
