"""When a failed call is tried again, and when a write's outcome is unknown.

One policy for every call the API layer makes (:class:`RetryPolicy`): a failure that may
pass (no reply, a 5xx, error 9, a 429) is retried with exponential backoff and jitter,
within an attempt budget and a time budget, through tenacity.

A write that must not be applied twice (:data:`DEFAULT_NON_IDEMPOTENT`: events, purchases,
returns, sends, page views) is retried only after a failure that proves it was not applied:
the connection was never made (refused, DNS, connect timeout, TLS handshake), or Sailthru
refused it for the rate limit (429 / error 43), which it does before anything else. Every
other failure of such a write becomes :class:`~.errors.OutcomeUnknown`: a 5xx or error 9
reply proves the request reached Sailthru (a gateway's 504 comes after Sailthru applied
it), and a read timeout or a connection dropped after sending proves nothing. The caller
then reconciles (a purchase is read back) instead of posting it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential, wait_random
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from ..errors import OutcomeUnknown, RateLimited, SailthruError, TransientError
from ._protocol import PAGEVIEW_ENDPOINT

__all__ = [
    "DEFAULT_NON_IDEMPOTENT",
    "RetryPolicy",
    "failed_reply",
    "failed_transport",
    "rate_limited_wait",
    "retrying",
    "surely_not_sent",
]

log = logging.getLogger(__name__)

# Calls that must not be applied twice: a repeated purchase doubles revenue, a repeated event
# triggers a flow twice, a repeated send mails twice, a repeated page view counts twice.
DEFAULT_NON_IDEMPOTENT: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "event"),
        ("POST", "purchase"),
        ("POST", "return"),
        ("POST", "send"),
        ("POST", PAGEVIEW_ENDPOINT),
    }
)
"""The (method, endpoint) calls never repeated unless the failure proves they were not applied."""

# A burst 429's retries wait 0.1, 0.2, 0.4, 0.8 s (each at most until the reset): a sliding
# window's bunch drains within tens of milliseconds, and the fourth wait reaches a reset
# up to 1.5 s away, so five attempts outlast it.
_BURST_BACKOFF = 0.1
_MAY_HAVE_APPLIED = "it may or may not have been applied: check before sending it again"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a call whose failure may pass (transport, 5xx, error 9, 429).

    At most ``max_attempts`` attempts, and no wait that would end after ``max_total`` seconds
    from the first attempt. Waits grow from ``initial_backoff`` doubling up to ``max_backoff``,
    plus up to ``initial_backoff`` of random jitter when ``jitter``. A 429 that says when the
    minute resets waits until then, even beyond ``max_backoff``, as long as it fits in
    ``max_total``. Writes that must not be applied twice are retried only when the failure
    proves they were not (see the module docs).
    """

    max_attempts: int = 5
    max_total: float = 90.0
    initial_backoff: float = 0.5
    max_backoff: float = 20.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("max_total", "initial_backoff", "max_backoff"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


def retrying(
    policy: RetryPolicy,
    *,
    clock: Callable[[], float],
    wall_clock: Callable[[], float],
    sleep: Callable[[float], object],
) -> Retrying:
    """A tenacity loop for one call under ``policy``, on the injected clocks and sleep.

    It retries the errors whose ``retryable`` is set and re-raises the last one.
    """

    def wait(seconds: float) -> None:
        sleep(seconds)

    return Retrying(
        stop=stop_after_attempt(policy.max_attempts)
        | _StopBeforeTotal(clock, clock(), policy.max_total),
        wait=_Wait(policy, wall_clock),
        retry=retry_if_exception(_is_retryable),
        sleep=wait,
        before_sleep=_log_retry,
        reraise=True,
    )


def failed_reply(error: SailthruError, *, may_repeat: bool) -> SailthruError:
    """What a Sailthru reply that is an error means for a call (``may_repeat``: idempotent).

    A 5xx or error 9 to a write that must not be applied twice is :class:`OutcomeUnknown`
    (with the reply's status and code): the request reached Sailthru. Anything else as it is.
    """
    if may_repeat or not isinstance(error, TransientError):
        return error
    return OutcomeUnknown(
        f"Sailthru answered {error.message!r} after the request reached it; {_MAY_HAVE_APPLIED}",
        method=error.method,
        endpoint=error.endpoint,
        status=error.status,
        code=error.code,
    )


def failed_transport(
    exc: requests.RequestException,
    *,
    may_repeat: bool,
    detail: str,
    service: str,
    method: str,
    endpoint: str,
) -> SailthruError:
    """What a call that got no reply means: retryable, unless a write may have landed.

    ``detail`` is the failure already described without secrets; ``service`` names who did
    not answer.
    """
    if may_repeat or surely_not_sent(exc):
        return TransientError(f"no reply from {service} ({detail})", method=method,
                              endpoint=endpoint)
    return OutcomeUnknown(
        f"no reply after the request was sent ({detail}); {_MAY_HAVE_APPLIED}",
        method=method,
        endpoint=endpoint,
    )


def surely_not_sent(exc: requests.RequestException) -> bool:
    """Whether the request failed before any byte of it could reach Sailthru."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and exc.args:
        cause = exc.args[0]
        if isinstance(cause, MaxRetryError):
            # Refused, DNS failure (NameResolutionError), connect timeout, TLS handshake.
            return isinstance(cause.reason, (NewConnectionError, ConnectTimeoutError)) or (
                isinstance(exc, requests.exceptions.SSLError)
            )
    return False


class _StopBeforeTotal(stop_base):
    """Stop when the next wait would end ``total`` seconds after ``start`` (injected clock)."""

    def __init__(self, clock: Callable[[], float], start: float, total: float) -> None:
        self._clock = clock
        self._start = start
        self._total = total

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._clock() - self._start + retry_state.upcoming_sleep > self._total


class _Wait(wait_base):
    """Exponential backoff with jitter; until the reset for a 429 that names it."""

    def __init__(self, policy: RetryPolicy, wall_clock: Callable[[], float]) -> None:
        self._wall_clock = wall_clock
        self._backoff: wait_base = wait_exponential(
            multiplier=policy.initial_backoff, max=policy.max_backoff
        )
        if policy.jitter:
            self._backoff = self._backoff + wait_random(0, policy.initial_backoff)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RateLimited):
            wait = rate_limited_wait(error, retry_state.attempt_number, self._wall_clock())
            if wait is not None:
                return wait
        return float(self._backoff(retry_state))


def rate_limited_wait(error: RateLimited, attempt: int, wall: float) -> float | None:
    """How long to wait before retrying the ``attempt``-th call refused with ``error`` at Unix
    time ``wall``; None when the ordinary backoff applies (no reset named, or it has passed)."""
    if error.reset_at is None:
        return None
    until_reset = error.reset_at - wall
    if error.burst:
        # Room comes back as the bunch drains: soon, then less soon, never past the reset
        # (so the attempts last until it whatever the window was).
        return max(min(_BURST_BACKOFF * 2.0 ** (attempt - 1), until_reset), 0.0)
    if error.budget_spent and until_reset > 0:
        return until_reset
    return None


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (TransientError, RateLimited)) and exc.retryable


def _log_retry(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    log.warning(
        "retrying in %.2f s (attempt %d failed): %s",
        retry_state.upcoming_sleep,
        retry_state.attempt_number,
        error,
    )
