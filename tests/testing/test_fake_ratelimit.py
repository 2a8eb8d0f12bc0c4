"""Rate limits: a sliding one-second window (or Sailthru's minute), per-minute headers on every
reply, 429 error 43."""

from __future__ import annotations

import math
import time

import pytest
from sailthru import SailthruClient

from sailthru_destination.testing import FakeSailthru
from sailthru_destination.testing._ratelimit import RateLimiter
from sailthru_destination.transport._protocol import DEFAULT_RATE_LIMITS


def test_headers_report_the_per_minute_limit_on_every_reply(client: SailthruClient) -> None:
    ok = client.save_user("a@example.com").get_rate_limit_headers()
    missing = client.get_user("nobody@example.com").get_rate_limit_headers()
    assert ok["limit"] == int(DEFAULT_RATE_LIMITS["POST user"] * 60)
    assert missing["limit"] == int(DEFAULT_RATE_LIMITS["GET"] * 60)
    assert ok["reset"] % 60 == 0
    assert 0 < ok["reset"] - time.time() <= 61


def test_remaining_goes_down_with_each_call(client: SailthruClient) -> None:
    first = client.get_lists().get_rate_limit_headers()["remaining"]
    second = client.get_lists().get_rate_limit_headers()["remaining"]
    assert second == first - 1


def test_over_the_limit_answers_429_error_43() -> None:
    with FakeSailthru(rate_limits={"DELETE user": 2, "default": 100}) as fake:
        client = SailthruClient("test-key", "test-secret", api_url=fake.url)
        answers = [client.api_delete("user", {"id": "a@example.com"}) for _ in range(3)]
        assert [a.get_status_code() for a in answers] == [404, 404, 429]
        assert answers[2].get_body() == {
            "error": 43,
            "errormsg": "Too many DELETE requests this minute to /user API",
        }
        assert answers[2].get_rate_limit_headers()["limit"] == 120
        assert client.get_lists().is_ok()  # other endpoints have their own count


def test_the_window_slides_after_one_second() -> None:
    now = [100.0]
    limiter = RateLimiter({"default": 2}, monotonic=lambda: now[0], wall=lambda: 600.0)
    assert limiter.take("POST", "event")[0]
    now[0] += 0.5
    assert limiter.take("POST", "event")[0]
    assert not limiter.take("POST", "event")[0]
    now[0] += 0.6  # the first request left the window
    allowed, headers = limiter.take("POST", "event")
    assert allowed
    assert headers == {
        "X-Rate-Limit-Limit": "120",
        "X-Rate-Limit-Remaining": "117",
        "X-Rate-Limit-Reset": "660",
    }


def test_remaining_restarts_at_each_wall_clock_minute() -> None:
    wall = [600.0]
    limiter = RateLimiter({"default": 1}, monotonic=lambda: wall[0], wall=lambda: wall[0])
    assert limiter.take("GET", "list")[1]["X-Rate-Limit-Remaining"] == "59"
    wall[0] = 661.0
    headers = limiter.take("GET", "list")[1]
    assert headers["X-Rate-Limit-Remaining"] == "59"
    assert headers["X-Rate-Limit-Reset"] == "720"


def test_a_given_table_replaces_the_defaults() -> None:
    limiter = RateLimiter({"user": 5, "default": 1})
    assert limiter.per_second("POST", "user") == 5
    assert limiter.per_second("GET", "list") == 1
    assert RateLimiter(None).per_second("POST", "user") == DEFAULT_RATE_LIMITS["POST user"]


def test_a_refusal_reports_nothing_remaining_until_the_window_has_room() -> None:
    now = [100.0]
    limiter = RateLimiter({"default": 2}, monotonic=lambda: now[0], wall=lambda: 600.0 + now[0])
    assert limiter.take("POST", "event")[0]
    now[0] += 0.25
    assert limiter.take("POST", "event")[0]
    allowed, headers = limiter.take("POST", "event")
    assert not allowed
    assert headers["X-Rate-Limit-Remaining"] == "0"
    assert headers["X-Rate-Limit-Limit"] == "120"
    # The first call leaves the window at 701.0 (wall): the reset names that second.
    assert headers["X-Rate-Limit-Reset"] == "701"
    now[0] = 101.0  # at the reset: room again
    assert limiter.take("POST", "event")[0]


def test_refused_calls_take_no_room_and_are_counted_as_refused() -> None:
    now = [100.0]
    limiter = RateLimiter({"default": 1}, monotonic=lambda: now[0], wall=lambda: 600.0)
    assert limiter.take("GET", "list")[0]
    for _ in range(5):
        assert not limiter.take("GET", "list")[0]
    assert limiter.refused("GET", "list") == 5
    now[0] += 1.0  # refusals did not extend the window
    allowed, headers = limiter.take("GET", "list")
    assert allowed
    assert headers["X-Rate-Limit-Remaining"] == "58"  # two accepted calls this minute


def test_a_burst_refusal_also_reports_nothing_remaining() -> None:
    limiter = RateLimiter({"default": 100}, monotonic=lambda: 5.0, wall=lambda: 600.5)
    allowed, headers = limiter.take("POST", "user", lambda: True)
    assert not allowed
    assert headers["X-Rate-Limit-Remaining"] == "0"
    assert headers["X-Rate-Limit-Reset"] == "601"
    assert limiter.take("POST", "user")[1]["X-Rate-Limit-Remaining"] == "5999"


def test_the_official_client_sees_zero_remaining_on_a_429() -> None:
    with FakeSailthru(rate_limits={"DELETE user": 1, "default": 100}) as fake:
        client = SailthruClient("test-key", "test-secret", api_url=fake.url)
        client.api_delete("user", {"id": "a@example.com"})
        refused = client.api_delete("user", {"id": "a@example.com"})
        assert refused.get_status_code() == 429
        headers = refused.get_rate_limit_headers()
        assert headers["remaining"] == 0
        assert 0 < headers["reset"] - time.time() <= 2


# -- Sailthru's own count: per wall-clock minute (rate_window=60) --------------------------------


def test_the_minute_window_lets_a_bunch_through_and_refuses_only_past_the_minutes_budget() -> None:
    wall = [6_000.5]
    limiter = RateLimiter({"default": 2}, monotonic=lambda: 0.0, wall=lambda: wall[0], window=60)
    # 120 calls in the same instant: a one-second window would refuse all but 2.
    answers = [limiter.take("POST", "event") for _ in range(120)]
    assert all(allowed for allowed, _ in answers)
    assert answers[-1][1] == {
        "X-Rate-Limit-Limit": "120",
        "X-Rate-Limit-Remaining": "0",
        "X-Rate-Limit-Reset": "6060",
    }
    wall[0] = 6_059.9
    allowed, headers = limiter.take("POST", "event")
    assert not allowed
    assert headers["X-Rate-Limit-Remaining"] == "0"
    assert headers["X-Rate-Limit-Reset"] == "6060"  # the next whole minute
    for _ in range(5):
        assert not limiter.take("POST", "event")[0]
    assert limiter.refused("POST", "event") == 6
    wall[0] = 6_060.0  # a new minute: the refused calls did not count against it
    answers = [limiter.take("POST", "event") for _ in range(120)]
    assert all(allowed for allowed, _ in answers)
    assert answers[0][1]["X-Rate-Limit-Remaining"] == "119"
    assert not limiter.take("POST", "event")[0]


def test_the_minute_window_counts_each_method_and_endpoint_apart() -> None:
    limiter = RateLimiter({"default": 1 / 60}, monotonic=lambda: 0.0, wall=lambda: 60.0,
                          window=60)
    assert limiter.take("POST", "event")[0]
    assert not limiter.take("POST", "event")[0]
    assert limiter.take("GET", "event")[0]
    assert limiter.take("POST", "list")[0]


def test_a_burst_fault_in_the_minute_window_names_the_next_second() -> None:
    limiter = RateLimiter({"default": 100}, monotonic=lambda: 0.0, wall=lambda: 600.5, window=60)
    allowed, headers = limiter.take("POST", "user", lambda: True)
    assert not allowed
    assert headers["X-Rate-Limit-Reset"] == "601"
    assert limiter.take("POST", "user")[1]["X-Rate-Limit-Remaining"] == "5999"


def test_other_window_lengths_count_in_wall_clock_windows_of_that_length() -> None:
    wall = [100.0]
    limiter = RateLimiter({"default": 1}, monotonic=lambda: 0.0, wall=lambda: wall[0], window=10)
    assert all(limiter.take("GET", "list")[0] for _ in range(10))
    allowed, headers = limiter.take("GET", "list")
    assert not allowed
    assert headers["X-Rate-Limit-Reset"] == "110"
    wall[0] = 110.0
    assert limiter.take("GET", "list")[0]


@pytest.mark.parametrize("window", [0.0, -1.0, math.inf, math.nan])
def test_a_window_must_be_a_positive_number_of_seconds(window: float) -> None:
    with pytest.raises(ValueError, match="rate window"):
        RateLimiter(None, window=window)


def test_the_fake_counts_per_minute_over_http_and_names_the_next_minute() -> None:
    wall = [1_800_000_030.0]
    with FakeSailthru(rate_limits={"DELETE user": 0.05, "default": 100}, rate_window=60,
                      wall_clock=lambda: wall[0]) as fake:
        assert fake.rate_window == 60
        client = SailthruClient("test-key", "test-secret", api_url=fake.url)
        answers = [client.api_delete("user", {"id": "a@example.com"}) for _ in range(4)]
        assert [a.get_status_code() for a in answers] == [404, 404, 404, 429]
        headers = answers[3].get_rate_limit_headers()
        assert headers == {"limit": 3, "remaining": 0, "reset": 1_800_000_060}
        wall[0] = 1_800_000_060.0
        assert client.api_delete("user", {"id": "a@example.com"}).get_status_code() == 404
    assert FakeSailthru().rate_window == 1.0  # the default: the quick one-second window
