"""``sailthru-destination serve``: a Segment-compatible ingest endpoint in front of Sailthru.

Anything that speaks Segment's HTTP tracking API (analytics SDKs pointed at a custom host,
Segment's webhook destination, RudderStack, a gateway) posts to ``/v1/batch``,
``/v1/identify``, ``/v1/track``, ``/v1/page`` or ``/v1/alias``. Each accepted message is
committed to a SQLite queue before the 200 (:mod:`.queue`); a worker drains it through the
:class:`~sailthru_destination.segment.SegmentAdapter` (:mod:`.worker`); failures go to the
run report's ``errors.jsonl``. ``GET /health`` answers the queue's depth and age and whether
intake is open; ``GET /metrics`` the Prometheus metrics (:mod:`.metrics`).

The modules: :mod:`.intake` reads and checks a request, :mod:`.app` is the WSGI app and its
queue limits, :mod:`.server` the waitress server with its connection limits, :mod:`.running`
the server, worker and graceful stop together, :mod:`.command` the flags and ``serve replay``.

The HTTP server is ``waitress`` (the ``serve`` extra): a pure-Python production WSGI server
with no C build, maintained by the Pylons project, that buffers request bodies and needs no
event loop; our app is small, synchronous and bound by the queue's fsync, which is what
waitress's thread pool is made for.
"""

from __future__ import annotations

from .app import SegmentIngest
from .command import register
from .limits import QueueLimits
from .queue import MessageQueue
from .worker import Worker

__all__ = ["MessageQueue", "QueueLimits", "SegmentIngest", "Worker", "register"]
