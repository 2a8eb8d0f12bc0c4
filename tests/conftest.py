"""Fixtures shared by the tests. The package's own plugin adds ``fake_sailthru``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import app_for, make_fake

from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    """A fake with the tests' credentials and limits high enough that pacing never waits."""
    with make_fake(rate_limits={"default": 100_000}) as server:
        yield server


@pytest.fixture
def api(fake: FakeSailthru) -> Iterator[SailthruApi]:
    """An API layer on :func:`fake` whose waits return at once."""
    with SailthruApi(app_for(fake), sleep=lambda _: None) as client:
        yield client
