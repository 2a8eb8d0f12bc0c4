"""Coordination of workers on several machines through Redis: list mutex, known lists, pacing.

Sailthru counts calls per account, and creates duplicate lists when creations race, whatever
machine they come from. Thread and file locks (:mod:`.locks`) and in-process pacing
(:mod:`.ratelimit`) only see one machine; :class:`RedisCoordination` makes the same three things
cluster-wide:

* :meth:`RedisCoordination.lock`: a :class:`~.locks.NamedLock` on redis-py's ``Lock``, with a
  lease (the key expires unless its holder renews it, so a crashed worker cannot hold it
  forever) and a timeout for waiting.
* :meth:`RedisCoordination.known_lists`: the lists known to exist, a Redis set per account, so
  each list name is checked once per cluster.
* :meth:`RedisCoordination.limiters`: a drop-in for :class:`~.ratelimit.RateLimiterRegistry`
  whose send slots come from pyrate-limiter's GCRA kept in Redis (one atomic script call per
  slot), and whose header-driven slow-downs (learned limit, pause after a 429, budget running
  low) are written to Redis so every process on every host obeys them.

Redis unreachable at start: the constructor raises :class:`CoordinationError`. Mid-run, every
operation that needs Redis raises :class:`CoordinationError` (a retryable
:class:`~.errors.SailthruError`, so batches report the record as retryable) before any call
to Sailthru is made; after a failure the coordination fails fast for ``cooldown`` seconds
instead of waiting on Redis again for every record. Nothing is ever done unlocked or unpaced.

Shared times are wall-clock (``time.time``): monotonic clocks mean nothing across machines, so
hosts must keep their clocks in sync (NTP); a skew eats into the pacing headroom.

A password in the URL (``user:pass@``, ``:pass@`` or ``?password=``) never appears in an
error, a log line or a repr: the server is named by its redacted URL (:mod:`._url`).

One module per piece: ``_server`` (:class:`RedisCoordination`, which builds the others),
``_lock``, ``_known_lists``, ``_pacing``, with ``_health`` (failures and the fail-fast
cooldown) and ``_url`` (redaction) under them all. A new shared piece takes the
coordination in its constructor, runs every Redis call through ``coordination.run`` and keys
through ``coordination.key``, and gets a module and a factory method of its own.
"""

from __future__ import annotations

try:
    import pyrate_limiter  # noqa: F401
    import redis  # noqa: F401
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "sailthru_destination.coordination needs the 'redis' extra: "
        "pip install 'sailthru-destination[redis]'"
    ) from _missing

from ..once.lists import KnownLists
from ._health import CoordinationError
from ._known_lists import RedisKnownLists
from ._lock import RedisListLock
from ._pacing import RedisRateLimiter, RedisRateLimiterRegistry
from ._server import RedisCoordination

__all__ = [
    "CoordinationError",
    "KnownLists",
    "RedisCoordination",
    "RedisKnownLists",
    "RedisListLock",
    "RedisRateLimiter",
    "RedisRateLimiterRegistry",
]
