"""The one papermill runner: a child process, killed at its timeout, that dies with its parent.

`run_notebook` (the parent's side) serves `qlcore submit` and every job run alike: it writes the
spec into the run's folder, starts ``python -m qlcore.ops.runner SPEC.json`` in its own process
group, waits for it, and at the timeout stops the group (SIGTERM, then SIGKILL). The child's side
(`main`) runs papermill once and writes its outcome into the folder (``outcome.json``) before it
exits, so whoever reads the folder later — the parent, or a scheduler started after the parent
crashed — learns what happened without guessing.

The child dies with its parent: PR_SET_PDEATHSIG sends it SIGTERM when the process that started it
ends, however it ends (kill -9 included); it then writes a ``stopped`` outcome and exits, and its
kernel, which watches its own parent, exits too. Living in its own process keeps a hung kernel, a
leaked thread or a crashed interpreter away from the scheduler.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUCCEEDED, FAILED, TIMEOUT = "succeeded", "failed", "timeout"
SPEC, OUTCOME, STDERR = "spec.json", "outcome.json", "stderr.txt"
KILL_GRACE_S = 5.0  # after SIGTERM, the group gets SIGKILL this much later


@dataclass(frozen=True, slots=True)
class NotebookRun:
    """What to run: papermill's input, output, parameters and working folder, and the time allowed."""

    input: Path
    output: Path
    params: Mapping[str, Any] = field(default_factory=dict)
    cwd: Path | None = None  # default: the notebook's folder
    timeout_s: int = 600  # the whole run; papermill's per-cell limit is the same number
    start_timeout_s: int = 60  # for the kernel to start


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended: `status` succeeded / failed / timeout, the error, papermill's count of the failing cell."""

    status: str
    error: str | None = None
    cell: int | None = None


# --- the parent's side ----------------------------------------------------------------------------------
def run_notebook(run: NotebookRun, workdir: Path, *, env: Mapping[str, str] | None = None,
                 on_start: Callable[[int], None] | None = None) -> Outcome:
    """Run the notebook in a child process and wait for it; killed (status timeout) at `run.timeout_s`.

    `workdir` keeps the spec, the child's stderr and its outcome; `on_start(pid)` is called once the
    child runs (a run record stores the pid there). Whatever interrupts the wait kills the child."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / SPEC
    spec.write_text(json.dumps({
        "input": str(run.input), "output": str(run.output), "params": dict(run.params),
        "cwd": str(run.cwd or Path(run.input).parent), "timeout_s": run.timeout_s,
        "start_timeout_s": run.start_timeout_s, "parent_pid": os.getpid(),
    }))
    with open(workdir / STDERR, "wb") as err:
        child = subprocess.Popen([sys.executable, "-m", "qlcore.ops.runner", str(spec)],
                                 env=None if env is None else dict(env), stdout=subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)
    try:
        if on_start is not None:
            on_start(child.pid)
        code = child.wait(timeout=run.timeout_s)
    except subprocess.TimeoutExpired:
        stop_group(child.pid, child.wait)
        return Outcome(TIMEOUT, f"timeout: the run exceeded {run.timeout_s} s and was stopped")
    except BaseException:  # a failed on_start, Ctrl-C in `qlcore submit`: no runner is left behind
        stop_group(child.pid, child.wait)
        raise
    return read_outcome(workdir, code)


def read_outcome(workdir: Path, returncode: int | None = None) -> Outcome:
    """The outcome the child wrote into `workdir`; a failure naming the exit when it wrote none (SIGKILL)."""
    file = workdir / OUTCOME
    if file.is_file():
        try:
            return Outcome(**json.loads(file.read_text()))
        except (ValueError, TypeError):
            pass  # cut short while writing: as if there were none
    log = workdir / STDERR
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.is_file() else []
    how = "" if returncode is None else f" (exit code {returncode})"
    return Outcome(FAILED, f"the run's process ended without an outcome{how}" + (": " + " | ".join(tail) if tail else ""))


def stop_group(pid: int, wait: Callable[..., Any], grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM to the process group led by `pid`, SIGKILL after `grace_s`; `wait(timeout=)` waits for the leader."""
    try:
        os.killpg(pid, signal.SIGTERM)
        wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait()
    except ProcessLookupError:
        pass


# --- the child's side ---------------------------------------------------------------------------------
def _write_outcome(workdir: Path, outcome: Outcome) -> None:
    tmp = workdir / f"{OUTCOME}.tmp"
    tmp.write_text(json.dumps(asdict(outcome)))
    os.replace(tmp, workdir / OUTCOME)  # whole or absent, never half-written


def _die_with_parent(parent_pid: int) -> bool:
    # PR_SET_PDEATHSIG (Linux; elsewhere `qlcore.ops.runs.settle_runs` stops orphans it finds). Not
    # imported from qlcore.store: this process starts on every run and sqlalchemy costs it ~0.8 s
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    return os.getppid() == parent_pid  # checked after the call: a parent that ended before it sent nothing


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m qlcore.ops.runner SPEC.json", file=sys.stderr)
        return 2
    spec_path = Path(argv[0])
    workdir = spec_path.parent
    spec = json.loads(spec_path.read_text())
    parent = int(spec["parent_pid"])

    def stopped(signum: int, _frame: Any) -> None:
        # PR_SET_PDEATHSIG fires as the parent's threads exit, when getppid() may still name the parent:
        # which of the two sent it cannot be told here (a timeout is recorded by the parent itself)
        _write_outcome(workdir, Outcome(FAILED, f"stopped by {signal.Signals(signum).name}: the process that "
                                                f"started it (pid {parent}) ended or stopped it"))
        os._exit(128 + signum)  # the kernel sees its parent go and exits too

    signal.signal(signal.SIGTERM, stopped)
    if not _die_with_parent(parent):
        stopped(signal.SIGTERM, None)
    # jsonschema (via nbformat) imports rfc3987_syntax when present, which builds a grammar at import
    # (~0.8 s of every run); papermill never validates IRI formats, so this process goes without it
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import papermill as pm

    try:
        pm.execute_notebook(
            spec["input"], spec["output"], parameters=spec["params"], kernel_name="python3", language="python",
            cwd=spec["cwd"], execution_timeout=spec["timeout_s"], start_timeout=spec["start_timeout_s"],
            progress_bar=False, log_output=False,
        )
    except pm.PapermillExecutionError as exc:
        outcome = Outcome(FAILED, f"{exc.ename}: {exc.evalue}", exc.exec_count)
    except Exception as exc:  # a dead kernel, a notebook that cannot be read, a cell over the time limit
        error = f"{type(exc).__name__}: {exc}"
        # a cell that outlived papermill's per-cell limit (the same timeout) before the parent's clock ran out
        outcome = Outcome(TIMEOUT if type(exc).__name__ == "CellTimeoutError" else FAILED, error)
    else:
        outcome = Outcome(SUCCEEDED)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the run is over: its outcome is written, not cut short
    _write_outcome(workdir, outcome)
    return 0 if outcome.status == SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
