"""What can go wrong when talking to Sailthru, as one exception tree, plus per-record errors.

Every exception the API layer raises is a :class:`SailthruError`: it says which call failed
(endpoint, method), what Sailthru answered (HTTP status, Sailthru error code and message) and
whether trying again can help (``retryable``). Batches never raise for one bad record: they
return a :class:`RecordError` built with :meth:`RecordError.from_error`.

:func:`error_from_reply` is the one place that turns a reply into an error. It reads the body
first, then the status, because Sailthru sends some errors with HTTP 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .transport._protocol import ErrorCode

__all__ = [
    "AuthError",
    "InvalidRequest",
    "NotFound",
    "OutcomeUnknown",
    "PermissionDenied",
    "RateLimited",
    "RecordError",
    "SailthruError",
    "TransientError",
    "error_from_reply",
    "sailthru_error_body",
]

_AUTH_CODES = frozenset(
    {ErrorCode.INVALID_API_KEY, ErrorCode.DISALLOWED_IP, ErrorCode.AUTHENTICATION_FAILED}
)


class SailthruError(Exception):
    """A Sailthru call that failed: which call, what Sailthru said, and whether to retry.

    ``status`` is the HTTP status (``None`` when no reply arrived), ``code`` Sailthru's error
    code (``None`` when the reply had no error body). ``retryable`` says whether the same call
    may succeed later; each subclass has its own default.
    """

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        method: str = "",
        status: int | None = None,
        code: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint.strip("/")
        self.method = method.upper()
        self.status = status
        self.code = code
        self.retryable = self.default_retryable if retryable is None else retryable

    def __str__(self) -> str:
        where = f"{self.method} /{self.endpoint}" if self.method or self.endpoint else "Sailthru"
        answer = []
        if self.status is not None:
            answer.append(f"HTTP {self.status}")
        if self.code is not None:
            answer.append(f"Sailthru error {self.code}")
        said = f" ({', '.join(answer)})" if answer else ""
        hint = " It may succeed if retried." if self.retryable else ""
        text = self.message.rstrip(". ") or "no detail"
        return f"{where} failed{said}: {text}.{hint}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, endpoint={self.endpoint!r}, "
            f"method={self.method!r}, status={self.status!r}, code={self.code!r}, "
            f"retryable={self.retryable!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor: pickling (e.g. across processes) needs the state spelled out.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[SailthruError], message: str, state: dict[str, Any]) -> SailthruError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class AuthError(SailthruError):
    """The API key is unknown, the IP is not allowed, or the signature (secret) is wrong."""


class PermissionDenied(SailthruError):
    """The API key is valid but may not use this endpoint (HTTP 403)."""


class NotFound(SailthruError):
    """The user or list named in the call does not exist (error 99 "not found", error 15)."""


class InvalidRequest(SailthruError):
    """Sailthru refused the call as it was made (bad parameter, invalid email, ...)."""


class TransientError(SailthruError):
    """A failure that may pass: no reply (network, timeout), a 5xx, or Sailthru error 9."""

    default_retryable = True


class RateLimited(SailthruError):
    """Too many calls to this endpoint this minute (HTTP 429 / error 43).

    ``reset_at`` is the Unix time at which Sailthru's counter resets and ``remaining`` the
    calls left this minute, when the reply said so. A 429 with calls left is a burst: a short
    backoff will do; with none left, only the reset will. ``burst`` is set when the pacer judged
    the 429 to come from calls bunched against a window shorter than the minute
    (:func:`~sailthru_destination.transport.ratelimit.refusal_is_burst`): room comes back within
    moments, so the call is retried soon, not at the reset.
    """

    default_retryable = True

    def __init__(
        self,
        message: str,
        *,
        reset_at: float | None = None,
        remaining: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.reset_at = reset_at
        self.remaining = remaining
        self.burst = False

    @property
    def budget_spent(self) -> bool:
        """Whether nothing more gets through before ``reset_at`` (no calls left, or unknown),
        unless the pacer judged the 429 a burst."""
        return not self.burst and (self.remaining is None or self.remaining <= 0)


class OutcomeUnknown(SailthruError):
    """A write that is not safe to repeat got no answer: it may or may not have been applied.

    Raised instead of retrying a purchase, return or event after a read timeout or a
    connection dropped once the request was sent; reconcile before posting it again.
    """


@dataclass(frozen=True)
class RecordError:
    """Why one record of a batch was not delivered, and whether delivering it again may work."""

    record_id: str
    reason: str
    field: str | None = None
    retryable: bool = False
    code: int | None = None

    @classmethod
    def from_error(
        cls, record_id: str, error: SailthruError, *, field: str | None = None
    ) -> RecordError:
        """The record-level view of a failed call made for record ``record_id``."""
        return cls(
            record_id=record_id,
            reason=str(error),
            field=field,
            retryable=error.retryable,
            code=error.code,
        )


def sailthru_error_body(body: object) -> tuple[int, str] | None:
    """Sailthru's ``(code, message)`` when ``body`` is an ``{error, errormsg}`` body, else None."""
    if not isinstance(body, Mapping) or "error" not in body or "errormsg" not in body:
        return None
    raw = body["error"]
    try:
        code = int(raw)
    except (TypeError, ValueError):
        return None
    return code, str(body["errormsg"])


def error_from_reply(
    *,
    method: str,
    endpoint: str,
    status: int,
    body: object,
    reset_at: float | None = None,
    remaining: float | None = None,
) -> SailthruError | None:
    """The error a reply stands for, or None when it is a success.

    ``body`` is the decoded JSON (``None`` when the reply was not JSON). The body decides
    first: an ``{error, errormsg}`` body is an error whatever the status. ``reset_at`` and
    ``remaining`` are the reply's ``X-Rate-Limit-Reset``/``-Remaining``, kept on a 429.
    """
    limits = {"reset_at": reset_at, "remaining": remaining}
    where: dict[str, Any] = {"method": method, "endpoint": endpoint, "status": status}
    parsed = sailthru_error_body(body)
    if parsed is None:
        if 200 <= status < 300 and isinstance(body, Mapping):
            return None
        return _error_from_status(status, body, limits, where)
    code, message = parsed
    where["code"] = code
    if code in _AUTH_CODES:
        return AuthError(message, **where)
    if code == ErrorCode.TOO_MANY_REQUESTS or status == 429:
        return RateLimited(message, **limits, **where)
    if code == ErrorCode.INTERNAL_ERROR or status >= 500:
        return TransientError(message, **where)
    if status == 403:
        return PermissionDenied(message, **where)
    if code == ErrorCode.UNKNOWN_LIST or (
        code == ErrorCode.OTHER and "not found" in message.lower()
    ):
        return NotFound(message, **where)
    return InvalidRequest(message, **where)


def _error_from_status(
    status: int, body: object, limits: dict[str, float | None], where: dict[str, Any]
) -> SailthruError:
    """An error from the status alone: the reply had no Sailthru error body."""
    if status == 429:
        return RateLimited("too many requests", **limits, **where)
    if status >= 500:
        return TransientError("server error", **where)
    if status == 401:
        return AuthError("authentication refused", **where)
    if status == 403:
        return PermissionDenied("access forbidden", **where)
    if body is None:
        # e.g. an api_url that points at a web site answering HTML: retrying will not help.
        return InvalidRequest("the reply is not JSON; is api_url Sailthru's API?", **where)
    return InvalidRequest(f"unexpected reply of type {type(body).__name__}", **where)
