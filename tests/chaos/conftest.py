"""Chaos runs are slow to set up, so one CI-size run is shared by the tests that judge it."""

from __future__ import annotations

import pytest
from chaos_workload import CI, Outcome, run


@pytest.fixture(scope="module")
def chaos_outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """One CI-size chaos run (4 processes x 20 threads, every fault on), verified."""
    return run(CI, tmp_path_factory.mktemp("chaos"))
