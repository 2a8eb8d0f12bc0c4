"""``GET /metrics``: serve's Prometheus metrics (the ``metrics`` extra, ``prometheus-client``).

Every metric lives in a registry of its own (never the process-wide default), so two servers in
one process, or a test, never share counts. Queue figures and the pace are read when scraped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from ..transport.calllog import CallRecord
from .queue import MessageQueue

__all__ = ["ServeMetrics", "available"]

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
except ImportError:  # pragma: no cover - exercised only without the extra
    _AVAILABLE = False
else:
    _AVAILABLE = True

_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def available() -> bool:
    """Whether ``prometheus-client`` is installed."""
    return _AVAILABLE


class ServeMetrics:
    """The counters of one server, and the Prometheus text of them."""

    def __init__(self, queue: MessageQueue) -> None:
        registry = CollectorRegistry(auto_describe=True)
        self._registry = registry
        self._accepted = Counter(
            "sailthru_serve_messages_accepted", "Messages accepted into the queue.",
            registry=registry,
        )  # fmt: skip
        self._refused = Counter(
            "sailthru_serve_messages_refused",
            "Messages (or whole requests) refused at intake, by reason.",
            ["reason"], registry=registry,
        )  # fmt: skip
        self._sends = Counter(
            "sailthru_serve_sends", "Messages the worker handled, by outcome and message type.",
            ["outcome", "kind"], registry=registry,
        )  # fmt: skip
        self._latency = Histogram(
            "sailthru_serve_sailthru_call_seconds", "Duration of each Sailthru call attempt.",
            ["endpoint"], buckets=_CALL_BUCKETS, registry=registry,
        )  # fmt: skip
        self._limited = Counter(
            "sailthru_serve_sailthru_rate_limited", "429 answers received from Sailthru.",
            ["endpoint"], registry=registry,
        )  # fmt: skip
        depth = Gauge("sailthru_serve_queue_depth", "Messages waiting.", registry=registry)
        depth.set_function(lambda: float(queue.depth()))
        size = Gauge("sailthru_serve_queue_bytes", "Bytes of messages waiting.", registry=registry)
        size.set_function(lambda: float(queue.size()))
        age = Gauge(
            "sailthru_serve_queue_oldest_age_seconds", "Age of the oldest waiting message.",
            registry=registry,
        )  # fmt: skip
        age.set_function(queue.oldest_age)
        self._endpoints: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def use_pace(self, pace: Callable[[str, str], float]) -> None:
        """Report ``pace(method, endpoint)``, the calls per second let through now, of each
        endpoint called so far."""
        self._registry.register(_PaceCollector(self._seen, pace))

    def __repr__(self) -> str:
        return "ServeMetrics()"

    def accepted(self, count: int) -> None:
        """``count`` messages were queued."""
        self._accepted.inc(count)

    def refused(self, reason: str, count: int = 1) -> None:
        """``count`` messages (or one request) were refused for ``reason``."""
        self._refused.labels(reason=reason).inc(count)

    def sent(self, outcome: str, kind: str) -> None:
        """The worker settled one message of type ``kind`` as ``outcome``."""
        self._sends.labels(outcome=outcome, kind=kind).inc()

    def call(self, record: CallRecord) -> None:
        """One Sailthru call attempt ended (a :class:`~..calllog.CallLog` sink)."""
        self._latency.labels(endpoint=record.endpoint).observe(record.duration)
        if record.status == 429:
            self._limited.labels(endpoint=record.endpoint).inc()
        with self._lock:
            self._endpoints.add((record.method, record.endpoint))

    def _seen(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._endpoints)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text of every metric, and its content type."""
        return generate_latest(self._registry), str(CONTENT_TYPE_LATEST)


class _PaceCollector:
    """The current pace of each endpoint called so far, read at scrape time."""

    def __init__(
        self, seen: Callable[[], list[tuple[str, str]]], pace: Callable[[str, str], float]
    ) -> None:
        self._seen = seen
        self._pace = pace

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sailthru_serve_sailthru_pace",
            "Calls per second the pacing lets through now, by method and endpoint.",
            labels=["method", "endpoint"],
        )
        for method, endpoint in self._seen():
            family.add_metric([method, endpoint], self._pace(method, endpoint))
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("sailthru_serve_sailthru_pace", "", labels=["method", "endpoint"])
