"""pytest plugin: the ``fake_sailthru`` fixture for every project that installs the package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._fake import FakeSailthru

__all__ = ["fake_sailthru"]


@pytest.fixture
def fake_sailthru() -> Iterator[FakeSailthru]:
    """A running fake Sailthru with API key ``test-key`` and secret ``test-secret``."""
    with FakeSailthru(api_key="test-key", api_secret="test-secret") as fake:  # noqa: S106
        yield fake
