"""Retries: what is retried, how often, how long it waits, and which writes are never repeated."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest
from _api_stub import Reply, stub_server
from pytest_mock import MockerFixture
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from sailthru_destination.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    TransientError,
)
from sailthru_destination.options import AppOptions
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi

KEY, SECRET = "test-key", "test-secret"
ITEM = {"id": "sku", "title": "Sock", "qty": 1, "price": 250, "url": "https://shop.example/s"}
WALL_START = 1_800_000_000.0


class FakeTime:
    """A clock, a wall clock and a sleep that only advance when slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.on_sleep: list[object] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.on_sleep:
            action = self.on_sleep.pop(0)
            assert callable(action)
            action()


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def _api(url: str, clock: FakeTime, retry: RetryPolicy | None = None, **kw: object) -> SailthruApi:
    return SailthruApi(
        AppOptions(KEY, SECRET, api_url=url, connect_timeout=0.5, read_timeout=2.0),
        clock=clock.clock,
        wall_clock=clock.wall,
        sleep=clock.sleep,
        retry=retry or RetryPolicy(max_attempts=4, initial_backoff=0.5, jitter=False),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with FakeSailthru(api_key=KEY, api_secret=SECRET) as fake:
        yield fake


def _attempts(api: SailthruApi) -> list[int]:
    return [record.attempt for record in api.call_log.records()]


def test_server_errors_are_retried_up_to_the_attempt_limit(
    fake: FakeSailthru, clock: FakeTime
) -> None:
    fake.faults = Faults(server_error_rate=1.0)
    with _api(fake.url, clock) as api, pytest.raises(TransientError):
        api.get("user", {"id": "a@example.com"})
    assert fake.calls[("GET", "user")] == 4
    assert clock.slept == [0.5, 1.0, 2.0]


def test_backoff_doubles_up_to_the_maximum_and_jitter_only_adds(
    fake: FakeSailthru, clock: FakeTime
) -> None:
    fake.faults = Faults(server_error_rate=1.0)
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.5, max_backoff=1.0, jitter=True)
    with _api(fake.url, clock, policy) as api, pytest.raises(TransientError):
        api.get("user", {"id": "a@example.com"})
    assert len(clock.slept) == 4
    for slept, base in zip(clock.slept, [0.5, 1.0, 1.0, 1.0]):
        assert base <= slept <= base + 0.5


def test_a_transient_failure_then_success_returns_the_reply(
    fake: FakeSailthru, clock: FakeTime
) -> None:
    fake.faults = Faults(server_error_rate=1.0)
    clock.on_sleep.append(lambda: setattr(fake, "faults", Faults()))
    with _api(fake.url, clock) as api:
        assert api.post("user", {"id": "a@example.com"})["ok"] is True
    assert _attempts(api) == [1, 2]


def test_dropped_connections_are_retried_for_idempotent_calls(
    fake: FakeSailthru, clock: FakeTime
) -> None:
    fake.faults = Faults(connection_error_rate=1.0)
    with _api(fake.url, clock) as api, pytest.raises(TransientError) as caught:
        api.post("user", {"id": "a@example.com"})
    assert caught.value.status is None
    assert _attempts(api) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda api: api.get("user", {"id": "nobody@example.com"}), NotFound),
        (lambda api: api.get("list", {"list": "Missing"}), NotFound),
        (lambda api: api.get("no-such-api", {}), InvalidRequest),
        (lambda api: api.post("event", {"id": "a@example.com", "event": "open"}), InvalidRequest),
    ],
)
def test_client_errors_are_never_retried(
    fake: FakeSailthru, clock: FakeTime, call: object, expected: type[Exception]
) -> None:
    with _api(fake.url, clock) as api, pytest.raises(expected):
        call(api)  # type: ignore[operator]
    assert sum(fake.calls.values()) == 1
    assert clock.slept == []


def test_auth_errors_are_never_retried(fake: FakeSailthru, clock: FakeTime) -> None:
    api = SailthruApi(AppOptions(KEY, "wrong", api_url=fake.url), sleep=clock.sleep)
    with api, pytest.raises(AuthError):
        api.get("user", {"id": "a@example.com"})
    assert _attempts(api) == [1]
    assert clock.slept == []


def test_a_rate_limit_burst_is_retried_after_a_short_backoff(clock: FakeTime) -> None:
    with FakeSailthru(api_key=KEY, api_secret=SECRET, wall_clock=clock.wall) as fake:
        with _api(fake.url, clock) as api:
            api.post("user", {"id": "a@example.com"})  # the minute has room: 17,999 left
            fake.faults = Faults(rate_limit_burst=1.0)
            clock.on_sleep[:] = [lambda: None, lambda: setattr(fake, "faults", Faults())]
            assert api.post("user", {"id": "b@example.com"})["ok"] is True
        calls = fake.calls[("POST", "user")]
    # The 429 names the next second although the minute has room: a burst, retried after
    # 0.1 s (the pacer's slot came first), not at the reset nor after the 0.5 s backoff.
    assert clock.slept == [pytest.approx(1 / 292.5), 0.1]
    assert calls == 3


def test_a_spent_minute_waits_until_the_reset_even_beyond_the_max_backoff(
    clock: FakeTime,
) -> None:
    spent = Reply(
        429,
        {"error": 43, "errormsg": "Too many POST requests this minute to /user API"},
        {
            "X-Rate-Limit-Limit": "600",
            "X-Rate-Limit-Remaining": "0",
            "X-Rate-Limit-Reset": str(int(WALL_START + 37)),
        },
    )
    with stub_server(spent, Reply()) as stub, _api(stub.url, clock) as api:
        assert api.post("user", {"id": "a@example.com"}) == {"ok": True}
    assert clock.slept == [pytest.approx(37.0)]
    assert len(stub.requests) == 2
    # Other callers of that endpoint were held back too.
    assert api.limiter("POST", "user").reserve(clock.now) >= 37.0


def test_a_reset_beyond_the_total_time_limit_gives_up_at_once(clock: FakeTime) -> None:
    spent = Reply(
        429,
        {"error": 43, "errormsg": "Too many"},
        {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(WALL_START + 50))},
    )
    policy = RetryPolicy(max_attempts=5, max_total=30.0)
    with stub_server(spent) as stub, _api(stub.url, clock, policy) as api:
        with pytest.raises(RateLimited) as caught:
            api.post("user", {"id": "a@example.com"})
    assert caught.value.reset_at == WALL_START + 50
    assert len(stub.requests) == 1
    assert clock.slept == []


def test_the_total_time_limit_stops_retries_before_the_attempt_limit(
    fake: FakeSailthru, clock: FakeTime
) -> None:
    fake.faults = Faults(server_error_rate=1.0)
    policy = RetryPolicy(max_attempts=10, max_total=2.0, initial_backoff=0.5, jitter=False)
    with _api(fake.url, clock, policy) as api, pytest.raises(TransientError):
        api.get("user", {"id": "a@example.com"})
    assert clock.slept == [0.5, 1.0]  # the next wait (2.0) would end past 2 s
    assert fake.calls[("GET", "user")] == 3


# -- writes that must not be repeated -----------------------------------------------------


# Failures are injected where urllib3 sends the request, under every path a call can take.
_URLOPEN = "urllib3.connectionpool.HTTPConnectionPool.urlopen"


def _connection_error(reason: Exception) -> MaxRetryError:
    return MaxRetryError(None, "/event", reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "failure",
    [
        ReadTimeoutError(None, "/event", "read timed out"),  # type: ignore[arg-type]
        ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed")),
        ProtocolError("reset", ConnectionResetError(104)),
    ],
    ids=["read timeout", "dropped after sending", "reset mid-request"],
)
@pytest.mark.parametrize("endpoint", ["event", "purchase", "return"])
def test_a_write_that_may_have_landed_is_not_repeated_and_says_the_outcome_is_unknown(
    fake: FakeSailthru, clock: FakeTime, mocker: MockerFixture, failure: Exception, endpoint: str
) -> None:
    send = mocker.patch(_URLOPEN, side_effect=failure)
    with _api(fake.url, clock) as api, pytest.raises(OutcomeUnknown) as caught:
        api.post(endpoint, {"id": "a@example.com", "event": "x"})
    assert send.call_count == 1
    assert not caught.value.retryable
    assert "may or may not have been applied" in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [
        _connection_error(ConnectTimeoutError("connect timed out")),
        _connection_error(NewConnectionError(None, "Connection refused")),  # type: ignore[arg-type]
        _connection_error(NameResolutionError("api.sailthru.com", None, OSError("dns"))),  # type: ignore[arg-type]
    ],
    ids=["connect timeout", "refused", "dns"],
)
def test_a_write_that_never_left_is_retried(
    fake: FakeSailthru, clock: FakeTime, mocker: MockerFixture, failure: Exception
) -> None:
    send = mocker.patch(_URLOPEN, side_effect=failure)
    with _api(fake.url, clock) as api, pytest.raises(TransientError) as caught:
        api.post("purchase", {"email": "a@example.com", "items": []})
    assert send.call_count == 4
    assert caught.value.retryable


def test_a_write_to_a_closed_port_is_retried(clock: FakeTime) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with _api(f"http://127.0.0.1:{port}", clock) as api, pytest.raises(TransientError):
        api.post("event", {"id": "a@example.com", "event": "signed_up"})
    assert _attempts(api) == [1, 2, 3, 4]


def test_a_real_dropped_connection_on_an_event_is_outcome_unknown(
    fake: FakeSailthru, clock: FakeTime
) -> None:
    fake.faults = Faults(connection_error_rate=1.0)
    with _api(fake.url, clock) as api, pytest.raises(OutcomeUnknown):
        api.post("event", {"id": "a@example.com", "event": "signed_up"})
    assert _attempts(api) == [1]


WRITES = [
    ("event", {"id": "a@example.com", "event": "signed_up"}),
    ("purchase", {"email": "a@example.com", "items": [ITEM], "purchase_keys": {"extid": "o1"}}),
    ("return", {"email": "a@example.com", "items": [ITEM], "order_id": "o1"}),
]


@pytest.mark.parametrize(("endpoint", "payload"), WRITES, ids=[w[0] for w in WRITES])
@pytest.mark.parametrize(
    ("faults", "status", "code"),
    [
        (Faults(error_after_apply_rate=1.0), 504, None),
        (Faults(server_error_rate=1.0), 500, 9),
    ],
    ids=["applied then 504", "500 error 9"],
)
def test_a_write_answered_with_a_5xx_reached_sailthru_and_is_never_repeated(
    fake: FakeSailthru,
    clock: FakeTime,
    endpoint: str,
    payload: dict[str, object],
    faults: Faults,
    status: int,
    code: int | None,
) -> None:
    fake.faults = faults
    with _api(fake.url, clock) as api, pytest.raises(OutcomeUnknown) as caught:
        api.post(endpoint, payload)
    assert _attempts(api) == [1]
    assert clock.slept == []
    assert (caught.value.status, caught.value.code) == (status, code)
    assert not caught.value.retryable
    assert "may or may not have been applied" in str(caught.value)


def test_a_page_view_answered_504_after_it_was_counted_is_not_counted_again(
    fake: FakeSailthru, clock: FakeTime
) -> None:
    fake.faults = Faults(error_after_apply_rate=1.0)
    app = AppOptions(KEY, SECRET, api_url=fake.url, tracking_url=fake.url)
    view = {"userIdKey": "extid", "userIdValue": "u1", "url": "https://shop.example/"}
    with SailthruApi(app, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep) as api:
        with pytest.raises(OutcomeUnknown) as caught:
            api.track_pageview("customer-1", view)
    assert caught.value.status == 504
    assert len(fake.pageviews) == 1
    assert clock.slept == []


def test_error_9_with_http_200_on_a_write_is_outcome_unknown(clock: FakeTime) -> None:
    internal = Reply(200, {"error": 9, "errormsg": "Internal error"})
    with stub_server(internal, Reply()) as stub, _api(stub.url, clock) as api:
        with pytest.raises(OutcomeUnknown) as caught:
            api.post("event", {"id": "a@example.com", "event": "signed_up"})
        assert caught.value.code == 9
        assert len(stub.requests) == 1
        # The same reply to a write that may be repeated is retried.
        assert api.post("user", {"id": "a@example.com"}) == {"ok": True}


def test_a_write_refused_with_429_error_43_was_not_applied_and_is_retried(
    fake: FakeSailthru, clock: FakeTime
) -> None:
    fake.faults = Faults(rate_limit_burst=1.0)
    clock.on_sleep.append(lambda: setattr(fake, "faults", Faults()))
    with _api(fake.url, clock) as api:
        assert api.post("event", {"id": "a@example.com", "event": "signed_up"}) == {"ok": True}
    assert _attempts(api) == [1, 2]
    assert len(fake.events) == 1


def test_idempotent_calls_are_retried_after_a_5xx(fake: FakeSailthru, clock: FakeTime) -> None:
    fake.faults = Faults(error_after_apply_rate=1.0)
    clock.on_sleep.append(lambda: setattr(fake, "faults", Faults()))
    with _api(fake.url, clock) as api:
        assert api.post("user", {"id": "a@example.com"})["ok"] is True
    assert _attempts(api) == [1, 2]


def test_idempotent_calls_are_retried_after_a_read_timeout(
    fake: FakeSailthru, clock: FakeTime, mocker: MockerFixture
) -> None:
    send = mocker.patch(
        _URLOPEN, side_effect=ReadTimeoutError(None, "/user", "read timed out")  # type: ignore[arg-type]
    )
    with _api(fake.url, clock) as api, pytest.raises(TransientError):
        api.post("user", {"id": "a@example.com"})
    assert send.call_count == 4


def test_the_set_of_writes_not_to_repeat_is_configurable(
    fake: FakeSailthru, clock: FakeTime
) -> None:
    fake.faults = Faults(connection_error_rate=1.0)
    with _api(fake.url, clock, non_idempotent={("post", "/user")}) as api:
        with pytest.raises(OutcomeUnknown):
            api.post("user", {"id": "a@example.com"})
        with pytest.raises(TransientError):
            api.post("event", {"id": "a@example.com", "event": "x"})
    assert _attempts(api) == [1, 1, 2, 3, 4]
