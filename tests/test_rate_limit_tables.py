"""Rate-limit tables and windows are checked where they are given (issue 26's red team).

A bad table used to be accepted and then fail every record as "a bug", answer 500 from the
fake, or be ignored (a typo in a key); a fixed window too short for a limit made the fake
refuse every call forever.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_cli import run

from sailthru_destination import AppOptions
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.testing._ratelimit import RateLimiter as FakeCounter
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.ratelimit import RateLimiterRegistry

BAD_TABLES = [
    ({"user": 0}, "0"),
    ({"user": -5}, "-5"),
    ({"user": math.nan}, "nan"),
    ({"user": math.inf}, "inf"),
    ({"user": "300"}, "'300'"),
    ({"user": True}, "True"),
    ({"nosuch": 5}, "nosuch"),
    ({"usr": 5}, "usr"),
    ({"PATCH user": 5}, "PATCH user"),
]


@pytest.mark.parametrize(("table", "named"), BAD_TABLES)
def test_the_api_refuses_a_bad_rate_limit_table_naming_key_and_value(
    table: dict[str, object], named: str
) -> None:
    app = AppOptions(api_key="k", api_secret="s", api_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="rate limit") as refused:
        SailthruApi(app, rate_limits=table)  # type: ignore[arg-type]
    assert named in str(refused.value)


@pytest.mark.parametrize(("table", "named"), BAD_TABLES)
def test_the_fake_refuses_a_bad_rate_limit_table(table: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match="rate limit") as refused:
        FakeSailthru(rate_limits=table)  # type: ignore[arg-type]
    assert named in str(refused.value)


def test_good_tables_are_kept() -> None:
    app = AppOptions(api_key="k", api_secret="s", api_url="http://127.0.0.1:9")
    table = {"POST user": 2, "GET": 10.5, "default": 1, "v1/track/event/pageview": 3}
    SailthruApi(app, rate_limits=table)
    FakeSailthru(rate_limits=table)


@given(
    window=st.floats(min_value=1e-4, max_value=120.0).filter(lambda w: w != 1.0),
    limit=st.floats(min_value=1e-3, max_value=1e4),
)
def test_a_fixed_window_is_refused_or_lets_a_call_through(window: float, limit: float) -> None:
    # A window counting zero calls answered 429 to every request, forever.
    assume(not 1 - 1e-6 <= limit * window < 1)  # the rounding tolerance's edge
    clock = [1000.0 * window]
    if limit * window < 1:
        with pytest.raises(ValueError, match="window"):
            FakeCounter({"default": limit}, window=window)
        return
    counter = FakeCounter(
        {"default": limit}, monotonic=lambda: clock[0], wall=lambda: clock[0], window=window
    )
    allowed, _ = counter.take("POST", "user")
    assert allowed


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("sync", "--rate-limit", "user=inf", "people.csv"), "inf"),
        (("sync", "--rate-limit", "nosuch=5", "people.csv"), "nosuch"),
        (("fake-server", "--port", "0", "--rate-limit", "user=inf"), "inf"),
        (("fake-server", "--port", "0", "--rate-limit", "user=nan"), "nan"),
        (("fake-server", "--port", "0", "--rate-limit", "usr=5"), "usr"),
        (("fake-server", "--port", "0", "--rate-window", "0.001"), "0.001"),
    ],
)
def test_the_cli_refuses_bad_rate_limits_with_exit_2(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    (tmp_path / "people.csv").write_text("email\na@example.com\n")
    done = run(tmp_path, None, *args)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("table", "named"), BAD_TABLES)
def test_a_limiter_registry_refuses_a_bad_table(table: dict[str, object], named: str) -> None:
    # The Redis registry (Celery's settings.rate_limits) is built this way, not via SailthruApi.
    with pytest.raises(ValueError, match="rate limit") as refused:
        RateLimiterRegistry(table)  # type: ignore[arg-type]
    assert named in str(refused.value)
