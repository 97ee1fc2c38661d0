"""Fixtures of the paper venue tests: a report recorder, a ledger path, and an opener that closes
every venue it opened."""
from __future__ import annotations

from pathlib import Path

import pytest
from paper_venue_support import Recorder, VenueOpener


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "venue" / "paper.sqlite"


@pytest.fixture
def open_venue(ledger_path: Path, recorder: Recorder):
    with VenueOpener(ledger_path, recorder) as opener:
        yield opener
