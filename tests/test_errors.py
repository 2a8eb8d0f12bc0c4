"""The error tree: how replies are classified, and what errors say about themselves."""

from __future__ import annotations

import pickle

import pytest

from sailthru_destination.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    RecordError,
    SailthruError,
    TransientError,
    error_from_reply,
    sailthru_error_body,
)


def _classify(status: int, body: object, **kwargs: float) -> SailthruError | None:
    return error_from_reply(method="post", endpoint="/user", status=status, body=body, **kwargs)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": 3, "errormsg": "Invalid API key"}, AuthError),
        (401, {"error": 4, "errormsg": "Disallowed IP"}, AuthError),
        (401, {"error": 5, "errormsg": "Authentication failed"}, AuthError),
        (
            403,
            {"error": 99, "errormsg": "API key not permitted to use the job API"},
            PermissionDenied,
        ),
        (400, {"error": 99, "errormsg": "User not found with email: a@b.co"}, NotFound),
        (404, {"error": 99, "errormsg": "User NOT FOUND with email: a@b.co"}, NotFound),
        (404, {"error": 15, "errormsg": "Unknown list: X"}, NotFound),
        (
            429,
            {"error": 43, "errormsg": "Too many POST requests this minute to /user API"},
            RateLimited,
        ),
        (500, {"error": 9, "errormsg": "Internal error"}, TransientError),
        (503, {"error": 2, "errormsg": "whatever"}, TransientError),
        (400, {"error": 2, "errormsg": "Missing required parameter: id"}, InvalidRequest),
        (400, {"error": 11, "errormsg": "Invalid email: x"}, InvalidRequest),
        (400, {"error": 99, "errormsg": "Something else"}, InvalidRequest),
    ],
)
def test_each_sailthru_error_body_maps_to_its_error_class(
    status: int, body: dict[str, object], expected: type[SailthruError]
) -> None:
    error = _classify(status, body)
    assert type(error) is expected
    assert error.code == body["error"]
    assert error.message == body["errormsg"]
    assert error.status == status
    assert (error.endpoint, error.method) == ("user", "POST")


def test_an_error_body_with_http_200_is_an_error_not_data() -> None:
    error = _classify(200, {"error": 99, "errormsg": "Invalid email: nope"})
    assert isinstance(error, InvalidRequest)
    assert error.status == 200
    assert isinstance(_classify(200, {"error": 9, "errormsg": "oops"}), TransientError)
    assert isinstance(_classify(200, {"error": 43, "errormsg": "slow down"}), RateLimited)


def test_a_json_object_with_2xx_is_a_success() -> None:
    assert _classify(200, {"ok": True}) is None
    assert _classify(200, {"status": "error", "job_id": "1"}) is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, None, RateLimited),
        (502, None, TransientError),
        (500, {"unexpected": True}, TransientError),
        (401, None, AuthError),
        (403, "<html>", PermissionDenied),
        (200, None, InvalidRequest),
        (404, None, InvalidRequest),
        (200, ["a", "list"], InvalidRequest),
        (400, {"no": "error keys"}, InvalidRequest),
    ],
)
def test_replies_without_an_error_body_are_classified_by_status(
    status: int, body: object, expected: type[SailthruError]
) -> None:
    error = _classify(status, body)
    assert type(error) is expected
    assert error.code is None


def test_only_transient_failures_and_rate_limits_are_retryable() -> None:
    assert TransientError("x").retryable
    assert RateLimited("x").retryable
    for cls in (AuthError, PermissionDenied, NotFound, InvalidRequest, OutcomeUnknown):
        assert not cls("x").retryable
    assert not issubclass(OutcomeUnknown, TransientError)


def test_a_rate_limit_keeps_the_reset_time_and_says_whether_the_budget_is_spent() -> None:
    body = {"error": 43, "errormsg": "Too many"}
    spent = _classify(429, body, reset_at=1_800_000_060.0, remaining=0)
    assert isinstance(spent, RateLimited)
    assert spent.reset_at == 1_800_000_060.0
    assert spent.budget_spent
    burst = _classify(429, body, reset_at=1_800_000_060.0, remaining=120)
    assert isinstance(burst, RateLimited)
    assert not burst.budget_spent
    assert RateLimited("no headers").budget_spent


def test_error_text_names_the_call_and_what_sailthru_said() -> None:
    error = _classify(400, {"error": 99, "errormsg": "User not found with email: a@b.co"})
    text = str(error)
    assert text == (
        "POST /user failed (HTTP 400, Sailthru error 99): User not found with email: a@b.co."
    )
    assert "NotFound(" in repr(error)
    transient = TransientError("no reply from Sailthru", method="GET", endpoint="list")
    assert str(transient) == (
        "GET /list failed: no reply from Sailthru. It may succeed if retried."
    )


def test_errors_survive_pickling_with_their_details() -> None:
    error = RateLimited("slow", method="GET", endpoint="user", status=429, code=43, reset_at=5.0)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RateLimited
    assert (copy.status, copy.code, copy.reset_at, str(copy)) == (429, 43, 5.0, str(error))


def test_a_record_error_is_built_from_a_sailthru_error() -> None:
    error = _classify(400, {"error": 11, "errormsg": "Invalid email: x"})
    assert error is not None
    record = RecordError.from_error("42", error, field="email")
    assert record == RecordError(
        record_id="42", reason=str(error), field="email", retryable=False, code=11
    )
    transient = RecordError.from_error("7", TransientError("timeout"))
    assert transient.retryable
    assert transient.field is None
    with pytest.raises(AttributeError):
        record.reason = "changed"  # type: ignore[misc]


def test_error_bodies_are_recognised_by_their_two_keys() -> None:
    assert sailthru_error_body({"error": "43", "errormsg": "x"}) == (43, "x")
    assert sailthru_error_body({"error": 9}) is None
    assert sailthru_error_body({"error": "nan", "errormsg": "x"}) is None
    assert sailthru_error_body(["error", "errormsg"]) is None
