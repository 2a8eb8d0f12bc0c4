"""FakeSailthru: the public face of the fake server (lifecycle, settings and inspection)."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from ._app import App
from ._endpoints._jobs import expire_exports, run_due_jobs
from ._faults import Faults
from ._inferred import Inferred
from ._ratelimit import DEFAULT_WINDOW, RateLimiter
from ._server import Server
from ._state import State

__all__ = ["FakeSailthru"]


class FakeSailthru:
    """A real HTTP server on 127.0.0.1 that sailthru-client cannot tell from api.sailthru.com.

    Use it as a context manager (or ``start()`` / ``stop()``); ``url`` is its base URL, for the
    API and for the page-view tracking endpoint alike. ``rate_limits`` are requests per second
    keyed like ``_protocol.DEFAULT_RATE_LIMITS`` (a given table replaces the defaults);
    ``latency`` is slept per request, ``connect_latency`` once per new connection. Every random
    choice comes from ``seed``. Jobs run asynchronously: ``job_seconds`` after their POST
    (even when its reply was lost) they do their work, then complete on their
    ``job_polls``-th GET (``job_polls=0``: inside the POST, at once; None: never) and end in
    ``error`` when ``job_fails`` is set. ``clock`` (monotonic seconds) is the fake's time for
    job delays and read lags: a test may pass its own and move it on instead of sleeping.

    ``rate_window`` is how the rate limits are counted, in seconds. The default, ``1.0``, is a
    sliding one-second window holding at most the per-second limit: stricter than Sailthru (a
    client that passes here passes there), and a test that overshoots gets its 429 at once and
    room again within a second. ``60.0`` counts as Sailthru does, per wall-clock minute: up to
    60 times the per-second limit from ``:00`` to ``:59``, however bunched, a 429 naming the
    next whole minute as its reset; use it to measure long runs at the ceiling. A refused call
    does not count (inferred). ``wall_clock`` (Unix seconds) places the minutes: a test may pass
    its own.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        api_secret: str = "test-secret",  # noqa: S107 (a test double's default)
        faults: Faults | None = None,
        rate_limits: Mapping[str, float] | None = None,
        latency: float = 0.0,
        connect_latency: float = 0.0,
        seed: int = 0,
        extid_lookup: bool = True,
        forbidden_endpoints: frozenset[str] = frozenset(),
        host: str = "127.0.0.1",
        port: int = 0,
        job_polls: int | None = 1,
        job_fails: bool = False,
        job_seconds: float = 0.25,
        clock: Callable[[], float] | None = None,
        rate_window: float = DEFAULT_WINDOW,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        if job_seconds < 0:
            raise ValueError(f"job_seconds must not be negative, got {job_seconds!r}")
        self._state = State(
            api_key=api_key,
            api_secret=api_secret,
            faults=faults or Faults(),
            seed=seed,
            extid_lookup=extid_lookup,
            forbidden_endpoints=frozenset(forbidden_endpoints),
        )
        self._state.latency = latency
        self._state.connect_latency = connect_latency
        self._state.job_polls = job_polls
        self._state.job_fails = job_fails
        self._state.job_seconds = job_seconds
        if clock is not None:
            self._state.clock = clock
        limiter_clocks = {} if wall_clock is None else {"wall": wall_clock}
        self._limiter = RateLimiter(rate_limits, window=rate_window, **limiter_clocks)
        self._host = host
        self._port = port
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"FakeSailthru(url={self.url if self._server else None!r})"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeSailthru:
        """Bind and serve in a background thread."""
        if self._server is not None:
            return self
        server = Server(self._host, self._port, App(self._state, self._limiter))
        self._server = server
        host, port = server.server_address[:2]
        self._state.base_url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-sailthru",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and wait for the serving thread."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeSailthru:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (only while running)."""
        if self._server is None:
            raise RuntimeError("the fake Sailthru is not running: use it as a context manager")
        return self._state.base_url

    # -- settings that may change while running --------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults being injected; assign a new ``Faults`` to change them."""
        return self._state.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._state.faults = faults

    @property
    def latency(self) -> float:
        """Seconds slept before answering each request."""
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._state.latency = seconds

    @property
    def connect_latency(self) -> float:
        """Seconds slept once per new connection (TCP + TLS set-up)."""
        return self._state.connect_latency

    @connect_latency.setter
    def connect_latency(self, seconds: float) -> None:
        self._state.connect_latency = seconds

    @property
    def rate_window(self) -> float:
        """How rate limits are counted, seconds: 1.0 slides, 60.0 is Sailthru's minute."""
        return self._limiter.window

    @property
    def inferred(self) -> Inferred:
        """The answers the fake guesses where Sailthru's are unconfirmed (switchable)."""
        return self._state.inferred

    @inferred.setter
    def inferred(self, answers: Inferred) -> None:
        self._state.inferred = answers

    @property
    def extid_lookup(self) -> bool:
        """Whether ``key: extid`` lookups are enabled on the (fake) account."""
        return self._state.extid_lookup

    @extid_lookup.setter
    def extid_lookup(self, enabled: bool) -> None:
        self._state.extid_lookup = enabled

    @property
    def job_polls(self) -> int | None:
        """The GET that completes a job: 1 = the first, 0 = done at creation, None = never."""
        return self._state.job_polls

    @job_polls.setter
    def job_polls(self, polls: int | None) -> None:
        self._state.job_polls = polls

    @property
    def clock(self) -> Callable[[], float]:
        """The fake's time (monotonic seconds) for job delays and read lags."""
        return self._state.clock

    @property
    def job_seconds(self) -> float:
        """Seconds (by the fake's clock) between a job's POST and its work."""
        return self._state.job_seconds

    @job_seconds.setter
    def job_seconds(self, seconds: float) -> None:
        self._state.job_seconds = seconds

    @property
    def job_fails(self) -> bool:
        """Whether jobs end in status ``error`` instead of ``completed``."""
        return self._state.job_fails

    @job_fails.setter
    def job_fails(self, fails: bool) -> None:
        self._state.job_fails = fails

    @property
    def exports_expire(self) -> bool:
        """Whether exports expire as they complete (the caller waited too long to fetch)."""
        return self._state.exports_expire

    @exports_expire.setter
    def exports_expire(self, expire: bool) -> None:
        self._state.exports_expire = expire

    def expire_export(self, job_id: str | None = None) -> None:
        """Expire a completed export (all when no id): ``expired: true``, its file 404s."""
        expire_exports(self._state, job_id)

    # -- inspection (copies, safe to read while the server runs) ---------------------------------

    @property
    def users(self) -> dict[str, dict[str, Any]]:
        """Every profile, by sid."""
        run_due_jobs(self._state)
        with self._state.lock:
            return copy.deepcopy(self._state.users)

    @property
    def lists(self) -> list[dict[str, Any]]:
        """Every list record, duplicates of a name included, with their counts."""
        run_due_jobs(self._state)
        with self._state.lock:
            return [self._state.list_view(record) for record in self._state.lists]

    def find_user(
        self, *, email: str | None = None, sid: str | None = None, extid: str | None = None
    ) -> dict[str, Any] | None:
        """One profile by email, sid or extid (a copy), or None."""
        run_due_jobs(self._state)
        with self._state.lock:
            for key, value in (("email", email), ("sid", sid), ("extid", extid)):
                if value is not None:
                    return self._state.snapshot(self._state.find_sid(key, value))
        raise TypeError("find_user() needs one of email=, sid=, extid=")

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every accepted POST /event, in order."""
        return self._copy_records("events")

    @property
    def purchases(self) -> list[dict[str, Any]]:
        """Every completed purchase (carts are on the users, as ``purchase_incomplete``)."""
        return self._copy_records("purchases")

    @property
    def returns(self) -> list[dict[str, Any]]:
        """Every accepted POST /return."""
        return self._copy_records("returns")

    @property
    def pageviews(self) -> list[dict[str, Any]]:
        """Every page view the tracking endpoint accepted."""
        return self._copy_records("pageviews")

    @property
    def sends(self) -> list[dict[str, Any]]:
        """Every send made with POST /send (nothing is mailed)."""
        with self._state.lock:
            return copy.deepcopy(list(self._state.sends.values()))

    @property
    def blasts(self) -> list[dict[str, Any]]:
        """Every blast made with POST /blast (nothing is mailed)."""
        with self._state.lock:
            return copy.deepcopy(list(self._state.blasts.values()))

    @property
    def jobs(self) -> list[dict[str, Any]]:
        """Every job created, with its status."""
        run_due_jobs(self._state)
        with self._state.lock:
            return [
                {k: copy.deepcopy(v) for k, v in job.items() if not k.startswith("_")}
                for job in self._state.jobs.values()
            ]

    @property
    def calls(self) -> Counter[tuple[str, str]]:
        """Requests that passed authentication, by (METHOD, endpoint)."""
        with self._state.lock:
            return Counter(self._state.calls)

    @property
    def call_times(self) -> list[tuple[float, str, str]]:
        """(monotonic time, METHOD, endpoint) of every request that passed authentication."""
        with self._state.lock:
            return list(self._state.call_times)

    @property
    def connections(self) -> int:
        """How many TCP connections the server has accepted (keep-alive reuses one)."""
        with self._state.lock:
            return self._state.connections

    def reset(self) -> None:
        """Forget all data, calls and rate-limit counts (the server keeps running)."""
        self._state.clear()
        self._limiter.reset()

    def _copy_records(self, name: str) -> list[dict[str, Any]]:
        run_due_jobs(self._state)
        with self._state.lock:
            records: list[dict[str, Any]] = getattr(self._state, name)
            return copy.deepcopy(records)
