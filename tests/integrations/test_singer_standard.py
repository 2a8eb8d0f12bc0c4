"""singer-sdk's own standard target tests, run against the fake Sailthru."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import KEY, SECRET
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.runners import TargetTestRunner

from sailthru_destination.integrations.singer import TargetSailthru
from sailthru_destination.testing import FakeSailthru

_Standard = get_target_test_class(TargetSailthru, config={})


class TestStandardTargetTests(_Standard):  # type: ignore[misc,valid-type]
    """The SDK's suite; every run talks to a fresh fake and keeps its state in a temp dir."""

    @pytest.fixture
    def runner(self, fake: FakeSailthru, host_home: Path) -> TargetTestRunner:
        config = {"api_key": KEY, "api_secret": SECRET, "api_url": fake.url,
                  "state_dir": str(host_home / "state")}
        return TargetTestRunner(target_class=TargetSailthru, config=config)
