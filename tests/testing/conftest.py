"""Fixtures for the fake's own tests: the official client pointed at the fake."""

from __future__ import annotations

import pytest
from sailthru import SailthruClient

from sailthru_destination.testing import FakeSailthru


@pytest.fixture
def client(fake_sailthru: FakeSailthru) -> SailthruClient:
    """sailthru-client 2.3.5 talking to the running fake over real HTTP."""
    return SailthruClient("test-key", "test-secret", api_url=fake_sailthru.url)
