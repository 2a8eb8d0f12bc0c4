"""The one door to Sailthru: signed, pooled, paced, retried, classified and logged calls.

:class:`SailthruApi` is the only code that talks HTTP to Sailthru. Payloads are signed by
sailthru-client's own payload preparation; they are sent through one pooled, thread-safe
``requests.Session`` (sailthru-client opens a new connection per call, which over TLS costs
round trips on every call). Each call is paced by a per-endpoint limiter shared by all threads
(:mod:`.ratelimit`), retried with tenacity when the failure may pass, turned into a typed
error (:mod:`.errors`) when it fails, and recorded, redacted, in a :class:`.calllog.CallLog`.

Which failures are retried, and which make a write's outcome unknown, is the policy of
:mod:`.retries`: a write that must not happen twice (event, purchase, return, send, page
view) is retried only when the failure proves it was not applied; otherwise it raises
:class:`.errors.OutcomeUnknown` so the caller can reconcile instead of posting it twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from sailthru.sailthru_client import SailthruClient

from ..errors import (
    RateLimited,
    SailthruError,
    error_from_reply,
)
from ..options import AppOptions
from ._adaptive import MAX_IN_FLIGHT, note_attempt
from ._concurrency import RunStopping, stop_event
from ._http import (
    Download,
    FileData,
    FilePart,
    decode,
    describe,
    number,
    open_download,
    pooled_session,
    redact_urllib3_logs,
)
from ._protocol import PAGEVIEW_ENDPOINT, check_rate_limits
from ._transport import FormTransport, Reply
from .calllog import CallLog, CallRecord, mask_key
from .machine_pacer import machine_limiters
from .ratelimit import RateLimiter, RateLimiterRegistry
from .retries import (
    DEFAULT_NON_IDEMPOTENT,
    RetryPolicy,
    failed_reply,
    failed_transport,
    retrying,
)

__all__ = [
    "DEFAULT_NON_IDEMPOTENT",
    "PAGEVIEW_ENDPOINT",
    "Download",
    "FileData",
    "RetryPolicy",
    "SailthruApi",
]

_log = logging.getLogger(__name__)


class SailthruApi:
    """Signed, paced, retried and logged calls to one Sailthru account.

    ``get``/``post``/``delete`` return the decoded reply and raise a
    :class:`~sailthru_destination.errors.SailthruError` subclass on failure, never an error
    body. Thread-safe: share one instance between all threads (``concurrency`` sizes the
    connection pool, by default for the most records an adaptive destination puts in flight;
    more threads wait for a connection).

    ``clock``/``wall_clock``/``sleep`` are injectable for tests. ``rate_limits`` gives starting
    rates (calls per second, keys as in ``_protocol.DEFAULT_RATE_LIMITS``). Pacing is shared by
    every process of this machine on the same account (Sailthru counts per account), through
    :func:`~sailthru_destination.transport.machine_pacer.machine_limiters`; with an injected
    clock it is this instance's own. ``limiters`` chooses another registry (e.g. Redis, across
    machines).
    """

    def __init__(
        self,
        app: AppOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
        rate_limits: Mapping[str, float] | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int | None = None,
        call_log: CallLog | None = None,
        limiters: RateLimiterRegistry | None = None,
        non_idempotent: Collection[tuple[str, str]] = DEFAULT_NON_IDEMPOTENT,
    ) -> None:
        if concurrency is None:
            concurrency = MAX_IN_FLIGHT
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        if rate_limits is not None:
            # A bad table would otherwise fail every record later, as "a bug".
            rate_limits = check_rate_limits(rate_limits)
        self._app = app
        self._client = SailthruClient(app.api_key, app.api_secret, api_url=app.api_url)
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._retry = retry or RetryPolicy()
        if limiters is None:
            # The machine-wide schedule keeps time with the machine's monotonic clock.
            limiters = (
                machine_limiters(limits=rate_limits)
                if clock is time.monotonic
                else RateLimiterRegistry(rate_limits)
            )
        self._limiters = limiters
        self._account = f"{app.api_url} {app.api_key}"
        self._non_idempotent = frozenset((m.upper(), e.strip("/")) for m, e in non_idempotent)
        self._timeout = (app.connect_timeout, app.read_timeout)
        self.call_log = call_log if call_log is not None else CallLog()
        self._session = pooled_session(app.api_url, concurrency)
        # Signed calls skip requests' per-call machinery unless a proxy is in the way.
        self._forms = (
            FormTransport(maxsize=concurrency, timeout=self._timeout, verify=self._session.verify)
            if requests.utils.select_proxy(app.api_url, self._session.proxies) is None
            else None
        )
        self._closed = False
        redact_urllib3_logs()

    # -- public calls ---------------------------------------------------------------------

    def get(self, endpoint: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """GET ``endpoint`` with ``payload``; the decoded reply."""
        return self._call("GET", endpoint, payload)

    def post(
        self,
        endpoint: str,
        payload: Mapping[str, Any],
        *,
        file: FileData | None = None,
        repeat: bool | None = None,
    ) -> dict[str, Any]:
        """POST ``payload`` to ``endpoint`` (multipart with a ``file`` part when given).

        ``repeat`` overrides whether this call may be sent again after an unclear answer
        (by default: unless the endpoint is a write not to repeat, such as /purchase). A job
        that imports purchases must not be repeated although most jobs may.
        """
        return self._call("POST", endpoint, payload, file, repeat=repeat)

    def delete(self, endpoint: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """DELETE on ``endpoint`` with ``payload``; the decoded reply."""
        return self._call("DELETE", endpoint, payload)

    def wait(self, seconds: float) -> None:
        """Sleep with the injected sleep: feature modules never sleep by themselves."""
        if seconds > 0:
            self._sleep(seconds)

    def limiter(self, method: str, endpoint: str) -> RateLimiter:
        """The pacing of ``method`` on ``endpoint`` for this account."""
        return self._limiters.get(method, endpoint, account=self._account)

    def track_pageview(self, customer_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Record a page view with Sailthru's tracking service (``AppOptions.tracking_url``).

        Not a signed API call: JSON with the customer id as a Bearer token. Paced, logged and
        retried like the other calls, but as a write that is not safe to repeat (a page view
        counts every time it arrives); the customer id is not written to the call log.
        """
        if not isinstance(customer_id, str) or not customer_id.strip():
            raise ValueError("a customer id is needed to track page views")
        return self._call("POST", PAGEVIEW_ENDPOINT, payload, bearer=customer_id.strip())

    def download(self, url: str) -> Download:
        """Open a file Sailthru points at (an export's URL) to read as text lines as it arrives.

        Unsigned, through the pooled session with the API's timeouts. Raises :class:`NotFound`
        when the file is gone (403/404/410: expired links), :class:`TransientError` for network
        failures and 5xx (also while reading) and :class:`InvalidRequest` for other refusals
        or a plain-http link to another machine.
        """
        return open_download(self._session, url, self._timeout)

    @property
    def url(self) -> str:
        """The API base URL."""
        return self._app.api_url

    def close(self) -> None:
        """Close the pooled connections."""
        self._closed = True
        self._session.close()
        if self._forms is not None:
            self._forms.close()

    def __enter__(self) -> SailthruApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SailthruApi(url={self._app.api_url!r}, api_key={self._app.masked_key!r})"

    # -- one call, with retries -----------------------------------------------------------

    def _call(
        self,
        method: str,
        endpoint: str,
        payload: Mapping[str, Any],
        file: FileData | None = None,
        *,
        bearer: str | None = None,
        repeat: bool | None = None,
    ) -> dict[str, Any]:
        if self._closed:
            raise RuntimeError("SailthruApi is closed")
        endpoint = endpoint.strip("/")
        if bearer is None:
            prepared: dict[str, str] = self._client._prepare_json_payload(dict(payload))
            url = f"{self._app.api_url}/{endpoint}"
            logged: dict[str, Any] = json.loads(prepared["json"])
        else:
            prepared, url = {}, f"{self._app.tracking_url}/{endpoint}"
            logged = json.loads(json.dumps(payload))
        call = _Call(
            method=method,
            endpoint=endpoint,
            url=url,
            prepared=prepared,
            logged_payload=logged,
            limiter=self.limiter(method, endpoint),
            may_repeat=(
                repeat if repeat is not None else (method, endpoint) not in self._non_idempotent
            ),
            file=FilePart(file) if file is not None else None,
            bearer=bearer,
        )
        attempts = retrying(
            self._retry, clock=self._clock, wall_clock=self._wall_clock, sleep=self._pause
        )
        reply: dict[str, Any] = {}
        for attempt in attempts:
            with attempt:
                reply = self._attempt(call, attempt.retry_state.attempt_number)
        return reply

    def _pause(self, seconds: float) -> None:
        """A back-off or pacing wait that a stopping run (Ctrl-C, SIGTERM) ends at once."""
        stop = stop_event()
        if stop is None:
            self._sleep(seconds)
        elif self._sleep is time.sleep:
            stop.wait(seconds)
        elif not stop.is_set():
            self._sleep(seconds)

    def _attempt(self, call: _Call, number: int) -> dict[str, Any]:
        waited = call.limiter.acquire(self._clock, self._pause)
        stop = stop_event()
        if number > 1 and stop is not None and stop.is_set():
            # The run is stopping: no retry starts; the record is left not done, for the next
            # run. (A record's next call after one that succeeded still goes: a confirmed
            # delete's read-back, say, is what records it.)
            raise RunStopping(f"{call.method} {call.endpoint}: not sent, the run is stopping")
        started_wall = self._wall_clock()
        started = self._clock()
        try:
            response = self._send(call)
        except requests.RequestException as exc:
            failure = self._transport_error(call, exc)
            note_attempt(waited=waited, pace=call.limiter.pace, at=started, status=None)
            self._record(call, number, started_wall, self._clock() - started, None, failure)
            raise failure from None
        duration = self._clock() - started
        body = decode(response.content)
        if call.bearer is not None and body is None and 200 <= response.status < 300:
            body = {}  # the tracking service may answer a bare 200
        reset_at, remaining, burst = self._learn(call.limiter, response.headers, response.status)
        error = error_from_reply(
            method=call.method,
            endpoint=call.endpoint,
            status=response.status,
            body=body,
            reset_at=reset_at,
            remaining=remaining,
        )
        if isinstance(error, RateLimited):
            error.burst = burst
        if isinstance(error, RateLimited) and (reset_at is None or remaining is None):
            # Without both headers the limiter could not judge the 429 (it did otherwise).
            if error.budget_spent:
                call.limiter.pause(self._clock(), self._rate_limit_wait(error))
            else:
                call.limiter.slow_down(self._clock())
        note_attempt(waited=waited, pace=call.limiter.pace, at=started, status=response.status)
        if error is not None:
            error = failed_reply(error, may_repeat=call.may_repeat)
        self._record(call, number, started_wall, duration, response.status, error)
        if error is not None:
            raise error
        assert isinstance(body, dict)
        return body

    def _send(self, call: _Call) -> Reply:
        if call.bearer is not None:
            return Reply.of(self._session.post(
                call.url,
                json=call.logged_payload,
                headers={"Authorization": f"Bearer {call.bearer}"},
                timeout=self._timeout,
            ))
        if call.file is None and self._forms is not None:
            return self._forms.send(call.method, call.url, call.prepared)
        if call.method == "POST":
            if call.file is None:
                return Reply.of(
                    self._session.post(call.url, data=call.prepared, timeout=self._timeout)
                )
            with call.file.open() as part:
                return Reply.of(self._session.post(
                    call.url, data=call.prepared, files={"file": part}, timeout=self._timeout
                ))
        return Reply.of(self._session.request(
            call.method, call.url, params=call.prepared, timeout=self._timeout
        ))

    def _transport_error(self, call: _Call, exc: requests.RequestException) -> SailthruError:
        secrets = (call.prepared.get("sig", ""), call.bearer or "", self._app.api_secret)
        return failed_transport(
            exc,
            may_repeat=call.may_repeat,
            detail=describe(exc, secrets=tuple(s for s in secrets if s)),
            service="Sailthru's tracking service" if call.bearer is not None else "Sailthru",
            method=call.method,
            endpoint=call.endpoint,
        )

    def _learn(
        self, limiter: RateLimiter, headers: Mapping[str, str], status: int
    ) -> tuple[float | None, float | None, bool]:
        """Feed the rate-limit headers (of a reply with HTTP ``status``) to the limiter;
        return (reset Unix time, remaining, whether the limiter judged a 429 a burst)."""
        limit = number(headers.get("X-Rate-Limit-Limit"))
        remaining = number(headers.get("X-Rate-Limit-Remaining"))
        reset_at = number(headers.get("X-Rate-Limit-Reset"))
        if limit is None and remaining is None:
            return reset_at, remaining, False
        reset_in = None if reset_at is None else reset_at - self._wall_clock()
        burst = limiter.observe(
            self._clock(),
            limit_per_minute=limit,
            remaining=remaining,
            reset_in=reset_in,
            reset_at=reset_at,
            refused=status == 429,
        )
        return reset_at, remaining, burst

    def _rate_limit_wait(self, error: RateLimited) -> float:
        if error.reset_at is not None:
            until_reset = error.reset_at - self._wall_clock()
            if until_reset > 0:
                return until_reset
        return self._retry.initial_backoff

    def _record(
        self,
        call: _Call,
        number: int,
        started_wall: float,
        duration: float,
        status: int | None,
        error: SailthruError | None,
    ) -> None:
        self.call_log.append(
            CallRecord(
                time=started_wall,
                method=call.method,
                endpoint=call.endpoint,
                api_key=mask_key(self._app.api_key),
                payload=call.logged_payload,
                attempt=number,
                duration=duration,
                status=status,
                code=error.code if error else None,
                message=error.message if error else None,
                error=type(error).__name__ if error else None,
                file=call.file.name if call.file else None,
            )
        )
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "%s /%s attempt %d -> %s in %.1f ms%s",
                call.method,
                call.endpoint,
                number,
                status if status is not None else "no reply",
                duration * 1000,
                f" ({type(error).__name__}: code {error.code})" if error else "",
            )


# -- helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """Everything one call's attempts share."""

    method: str
    endpoint: str
    url: str
    prepared: dict[str, str]
    logged_payload: dict[str, Any]
    limiter: RateLimiter
    may_repeat: bool
    file: FilePart | None
    bearer: str | None = None
