"""The one door to Sailthru: signed, pooled, paced, retried, classified and logged calls.

:class:`SailthruApi` is the only code that talks HTTP to Sailthru. Payloads are signed by
sailthru-client's own payload preparation; they are sent through one pooled, thread-safe
``requests.Session`` (sailthru-client opens a new connection per call, which over TLS costs
round trips on every call). Each call is paced by a per-endpoint limiter shared by all threads
(:mod:`.ratelimit`), retried with tenacity when the failure may pass, turned into a typed
error (:mod:`.errors`) when it fails, and recorded, redacted, in a :class:`.calllog.CallLog`.

Writes that must not happen twice (events, purchases, returns, sends) are retried only when
the request surely did not reach Sailthru, or Sailthru answered 429/5xx; after a read timeout
they raise :class:`.errors.OutcomeUnknown` so the caller can reconcile instead of posting a
purchase twice.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import IO, Any, BinaryIO, cast
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from sailthru.sailthru_client import SailthruClient
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential, wait_random
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from . import __version__
from ._adaptive import MAX_IN_FLIGHT, note_attempt
from ._protocol import is_loopback_url
from .calllog import CallLog, CallRecord, mask_key
from .errors import (
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    SailthruError,
    TransientError,
    error_from_reply,
)
from .options import AppOptions
from .ratelimit import RateLimiter, RateLimiterRegistry, machine_limiters

__all__ = [
    "DEFAULT_NON_IDEMPOTENT",
    "PAGEVIEW_ENDPOINT",
    "Download",
    "FileData",
    "RetryPolicy",
    "SailthruApi",
]

PAGEVIEW_ENDPOINT = "v1/track/event/pageview"
"""The tracking service's page-view path (under ``AppOptions.tracking_url``)."""

_log = logging.getLogger(__name__)

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

FileData = bytes | str | os.PathLike[str] | IO[bytes]
"""A file for a multipart POST: its bytes, a path, or a binary file object."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a call whose failure may pass (transport, 5xx, error 9, 429).

    At most ``max_attempts`` attempts, and no wait that would end after ``max_total`` seconds
    from the first attempt. Waits grow from ``initial_backoff`` doubling up to ``max_backoff``,
    plus up to ``initial_backoff`` of random jitter when ``jitter``. A 429 that says when the
    minute resets waits until then, even beyond ``max_backoff``, as long as it fits in
    ``max_total``.
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
    :func:`~sailthru_destination.ratelimit.machine_limiters`; with an injected clock it is this
    instance's own. ``limiters`` chooses another registry (e.g. Redis, across machines).
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
        self._session = _pooled_session(app.api_url, concurrency)
        self._closed = False
        _redact_urllib3_logs()

    # -- public calls ---------------------------------------------------------------------

    def get(self, endpoint: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """GET ``endpoint`` with ``payload``; the decoded reply."""
        return self._call("GET", endpoint, payload)

    def post(
        self, endpoint: str, payload: Mapping[str, Any], *, file: FileData | None = None
    ) -> dict[str, Any]:
        """POST ``payload`` to ``endpoint`` (multipart with a ``file`` part when given)."""
        return self._call("POST", endpoint, payload, file)

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
        where = _without_query(url)
        if not url.startswith("https://") and not is_loopback_url(url):
            raise InvalidRequest(f"refusing to download {where} over plain http", method="GET")
        try:
            response = self._session.get(url, stream=True, timeout=self._timeout)
        except requests.RequestException as exc:
            raise TransientError(
                f"could not download {where}: {type(exc).__name__}", method="GET"
            ) from None
        status = response.status_code
        if status >= 400:
            response.close()
            kind = (
                NotFound
                if status in (403, 404, 410)
                else (TransientError if status >= 500 else InvalidRequest)
            )
            raise kind(f"the download of {where} was refused", method="GET", status=status)
        response.raw.decode_content = True
        # Otherwise urllib3 marks the stream closed at its last byte and the text wrapper fails.
        response.raw.auto_close = False
        return Download(response, where)

    @property
    def url(self) -> str:
        """The API base URL."""
        return self._app.api_url

    def close(self) -> None:
        """Close the pooled connections."""
        self._closed = True
        self._session.close()

    def __enter__(self) -> SailthruApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SailthruApi(url={self._app.api_url!r}, api_key={self._app.masked_key!r})"

    def _sleep_for_tenacity(self, seconds: float) -> None:
        self._sleep(seconds)

    # -- one call, with retries -----------------------------------------------------------

    def _call(
        self,
        method: str,
        endpoint: str,
        payload: Mapping[str, Any],
        file: FileData | None = None,
        *,
        bearer: str | None = None,
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
            may_repeat=(method, endpoint) not in self._non_idempotent,
            file=_FilePart(file) if file is not None else None,
            bearer=bearer,
        )
        policy = self._retry
        retrying = Retrying(
            stop=stop_after_attempt(policy.max_attempts)
            | _StopBeforeTotal(self._clock, self._clock(), policy.max_total),
            wait=_Wait(policy, self._wall_clock),
            retry=retry_if_exception(_is_retryable),
            sleep=self._sleep_for_tenacity,
            before_sleep=_log_retry,
            reraise=True,
        )
        reply: dict[str, Any] = {}
        for attempt in retrying:
            with attempt:
                reply = self._attempt(call, attempt.retry_state.attempt_number)
        return reply

    def _attempt(self, call: _Call, number: int) -> dict[str, Any]:
        waited = call.limiter.acquire(self._clock, self._sleep)
        started_wall = self._wall_clock()
        started = self._clock()
        try:
            response = self._send(call)
        except requests.RequestException as exc:
            failure = self._transport_error(call, exc)
            note_attempt(waited=waited, pace=call.limiter.pace(started), throttled=True)
            self._record(call, number, started_wall, self._clock() - started, None, failure)
            raise failure from None
        duration = self._clock() - started
        body = _decode(response.content)
        if call.bearer is not None and body is None and 200 <= response.status_code < 300:
            body = {}  # the tracking service may answer a bare 200
        reset_at, remaining = self._learn(call.limiter, response.headers)
        error = error_from_reply(
            method=call.method,
            endpoint=call.endpoint,
            status=response.status_code,
            body=body,
            reset_at=reset_at,
            remaining=remaining,
        )
        if isinstance(error, RateLimited):
            if error.budget_spent:
                call.limiter.pause(self._clock(), self._rate_limit_wait(error))
            else:
                call.limiter.slow_down(self._clock())
        note_attempt(
            waited=waited,
            pace=call.limiter.pace(started),
            throttled=response.status_code == 429 or response.status_code >= 500,
        )
        self._record(call, number, started_wall, duration, response.status_code, error)
        if error is not None:
            raise error
        assert isinstance(body, dict)
        return body

    def _send(self, call: _Call) -> requests.Response:
        if call.bearer is not None:
            return self._session.post(
                call.url,
                json=call.logged_payload,
                headers={"Authorization": f"Bearer {call.bearer}"},
                timeout=self._timeout,
            )
        if call.method == "POST":
            if call.file is None:
                return self._session.post(call.url, data=call.prepared, timeout=self._timeout)
            with call.file.open() as part:
                return self._session.post(
                    call.url, data=call.prepared, files={"file": part}, timeout=self._timeout
                )
        return self._session.request(
            call.method, call.url, params=call.prepared, timeout=self._timeout
        )

    def _transport_error(self, call: _Call, exc: requests.RequestException) -> SailthruError:
        secrets = (call.prepared.get("sig", ""), call.bearer or "", self._app.api_secret)
        detail = _describe(exc, secrets=tuple(s for s in secrets if s))
        service = "Sailthru's tracking service" if call.bearer is not None else "Sailthru"
        if call.may_repeat or _surely_not_sent(exc):
            return TransientError(
                f"no reply from {service} ({detail})", method=call.method, endpoint=call.endpoint
            )
        return OutcomeUnknown(
            f"no reply after the request was sent ({detail}); it may or may not have been "
            "applied: check before sending it again",
            method=call.method,
            endpoint=call.endpoint,
        )

    def _learn(
        self, limiter: RateLimiter, headers: Mapping[str, str]
    ) -> tuple[float | None, float | None]:
        """Feed the rate-limit headers to the limiter; return (reset Unix time, remaining)."""
        limit = _number(headers.get("X-Rate-Limit-Limit"))
        remaining = _number(headers.get("X-Rate-Limit-Remaining"))
        reset_at = _number(headers.get("X-Rate-Limit-Reset"))
        if limit is None and remaining is None:
            return reset_at, remaining
        reset_in = None if reset_at is None else reset_at - self._wall_clock()
        limiter.observe(
            self._clock(),
            limit_per_minute=limit,
            remaining=remaining,
            reset_in=reset_in,
            reset_at=reset_at,
        )
        return reset_at, remaining

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
    file: _FilePart | None
    bearer: str | None = None


class _FilePart:
    """The ``file`` part of a multipart POST, re-readable for each attempt."""

    def __init__(self, data: FileData) -> None:
        self._data = data
        self._start = 0
        if isinstance(data, (str, os.PathLike)):
            self.name = os.path.basename(os.fspath(data))
        elif isinstance(data, bytes):
            self.name = "upload"
        else:
            self.name = os.path.basename(str(getattr(data, "name", "upload")))
            self._start = data.tell()

    def open(self) -> _OpenPart:
        """The part for one attempt: a (filename, content) pair, closed on exit."""
        return _OpenPart(self)

    @property
    def data(self) -> FileData:
        return self._data

    @property
    def start(self) -> int:
        return self._start


class _OpenPart:
    def __init__(self, part: _FilePart) -> None:
        self._part = part
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> tuple[str, bytes | IO[bytes]]:
        data = self._part.data
        if isinstance(data, bytes):
            return (self._part.name, data)
        if isinstance(data, (str, os.PathLike)):
            self._handle = open(data, "rb")
            return (self._part.name, self._handle)
        data.seek(self._part.start)
        return (self._part.name, data)

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.close()


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
        if isinstance(error, RateLimited) and error.budget_spent and error.reset_at is not None:
            until_reset = error.reset_at - self._wall_clock()
            if until_reset > 0:
                return until_reset
        return float(self._backoff(retry_state))


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (TransientError, RateLimited)) and exc.retryable


def _log_retry(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    _log.warning(
        "retrying in %.2f s (attempt %d failed): %s",
        retry_state.upcoming_sleep,
        retry_state.attempt_number,
        error,
    )


def _pooled_session(url: str, concurrency: int) -> requests.Session:
    session = requests.Session()
    # Read the environment (proxies, CA bundle) once, not on every call: per call it costs
    # about a quarter of requests' CPU time.
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings["proxies"] or {})
    session.verify = settings["verify"]
    session.trust_env = False
    adapter = HTTPAdapter(
        pool_connections=4, pool_maxsize=concurrency, pool_block=True, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # The session is shared by threads: refuse cookies so it holds no mutable per-call state.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.headers["User-Agent"] = f"sailthru-destination/{__version__} (python-requests)"
    return session


def _decode(content: bytes) -> Any:
    """The reply body as JSON, or None when it is not JSON."""
    try:
        return json.loads(content)
    except ValueError:
        return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _surely_not_sent(exc: requests.RequestException) -> bool:
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


_QUERY = re.compile(r"\?[^\s'\")]*")


def _describe(exc: requests.RequestException, *, secrets: Collection[str]) -> str:
    """A short account of a transport failure with no URL query, signature or secret in it."""
    cause: object = exc.args[0] if exc.args else exc
    if isinstance(cause, MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    text = f"{type(exc).__name__}: {cause}"
    text = _QUERY.sub("?<redacted>", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text[:300]


class _RedactQuery(logging.Filter):
    """Hides query strings (api_key, json, sig) in urllib3's DEBUG lines about each request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, str) and "sig=" in arg for arg in record.args
        ):
            record.args = tuple(
                _QUERY.sub("?<redacted>", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


_redaction_lock = threading.Lock()
_redaction_installed = False


def _redact_urllib3_logs() -> None:
    """Install the query-hiding filter on urllib3's connection-pool logger, once."""
    global _redaction_installed
    with _redaction_lock:
        if not _redaction_installed:
            logging.getLogger("urllib3.connectionpool").addFilter(_RedactQuery())
            _redaction_installed = True


class Download:
    """An open download: ``with`` gives its text lines and closes the connection after."""

    def __init__(self, response: requests.Response, where: str) -> None:
        self._response = response
        self._where = where
        # utf-8-sig: a file opened and saved by a spreadsheet starts with a byte-order mark.
        self._text = io.TextIOWrapper(
            cast(BinaryIO, response.raw), encoding="utf-8-sig", newline=""
        )

    def __enter__(self) -> Iterator[str]:
        return self._lines()

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self._text.close()
        self._response.close()

    def _lines(self) -> Iterator[str]:
        try:
            yield from self._text
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise TransientError(
                f"the download of {self._where} broke off ({type(exc).__name__})", method="GET"
            ) from None


def _without_query(url: str) -> str:
    """``url`` without its query: signed links carry their signature there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
