"""The child process of a scheduled run: ``python -m qlcore.ops.runner SPEC.json``.

It runs papermill once and exits 0 (the notebook ran) or 1 (it raised: the error goes to
``SPEC.json.result``). The parent (`qlcore.ops.runs`) owns the clock and kills this process at the
job's timeout; the kernel notices its parent is gone and exits too. Living in its own process
keeps a hung kernel, a leaked thread or a crashed interpreter away from the scheduler.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m qlcore.ops.runner SPEC.json", file=sys.stderr)
        return 2
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    # jsonschema (via nbformat) imports rfc3987_syntax when present, which builds a grammar at import
    # (~0.8 s of every run); papermill never validates IRI formats, so this process goes without it
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import papermill as pm

    try:
        pm.execute_notebook(
            spec["input"], spec["output"], parameters=spec["params"], kernel_name="python3", language="python",
            cwd=spec["cwd"], execution_timeout=spec["timeout_s"], progress_bar=False, log_output=False,
        )
    except pm.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # a dead kernel, a notebook that cannot be read: the parent records it
        error = f"{type(exc).__name__}: {exc}"
    else:
        return 0
    Path(f"{spec_path}.result").write_text(json.dumps({"error": error}))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
