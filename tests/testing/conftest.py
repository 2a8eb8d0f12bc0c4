"""Fixtures for the fake's own tests: the official client pointed at the fake."""

from __future__ import annotations

import pytest
from sailthru import SailthruClient

from sailthru_destination.testing import FakeSailthru


@pytest.fixture
def client(fake_sailthru: FakeSailthru) -> SailthruClient:
    """sailthru-client 2.3.5 talking to the running fake over real HTTP.

    Its jobs run inside their POST: these tests check what a job does (when it runs is
    tested with a clock in test_fake_async_jobs.py).
    """
    fake_sailthru.job_seconds = 0
    return SailthruClient("test-key", "test-secret", api_url=fake_sailthru.url)
