"""The attack tests' desk: one `qlcore serve` per test module, with its own users and a short lockout."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from desk_doors import LOCKOUT_S, Served, add_users, serve


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("doors")
    add_users(data_dir)
    with serve(data_dir, "--login-lockout-s", str(LOCKOUT_S)) as served:
        yield served
