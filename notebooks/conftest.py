"""pytest hooks for the notebooks nbval runs (`--nbval-lax`, see pyproject.toml).

A notebook's cells are test items that share one kernel and must run in order on one worker, so
with pytest-xdist the suite needs ``--dist loadfile`` (one notebook file, one worker).
``--dist loadgroup`` cannot do it here: with pytest 9.2, xdist 3.8 no longer manages to tag node
ids with their ``xdist_group`` (pytest now reads node ids from ``Node._id``), so it schedules like
``--dist load`` and spreads one notebook's cells over both workers.

A notebook that reads ../shared/data is skipped when that folder is absent outside CI; in CI it
runs, and fails, like the tests that read it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_CI or SHARED_DATA.is_dir():
        return
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix == ".ipynb" and "shared/data" in path.read_text():
            item.add_marker(pytest.mark.skip(reason=f"{path.name} reads {SHARED_DATA}, which is not present"))
