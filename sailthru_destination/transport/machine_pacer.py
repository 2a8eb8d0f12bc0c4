"""Pacing shared by every process of one machine: a :class:`~.ratelimit.RateLimiter` whose
schedule lives in a small file.

Sailthru counts per account, so worker processes that each paced themselves to the limit would
together send too much. :func:`machine_limiters` gives every process of the machine that uses
the same folder limiters whose next slot, pause and learned limit are read and advanced under
an exclusive lock of their file (split from :mod:`.ratelimit`, whose law they follow).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import struct
import threading
from collections.abc import Mapping
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: a lock file per call instead
    fcntl = None  # type: ignore[assignment]
from filelock import FileLock

from ..once.locks import default_lock_dir
from ._protocol import DEFAULT_RATE_LIMITS
from .ratelimit import DEFAULT_HEADROOM, RateLimiter, RateLimiterRegistry

__all__ = ["MachineRateLimiter", "MachineRateLimiterRegistry", "machine_limiters"]

# The machine-wide schedule: next free slot, paused-until and the learned limit (calls per
# second; 0 until a reply told it), three doubles. A file of the older two-double layout
# reads as "no limit learned yet".
_STATE = struct.Struct("<ddd")
_OLD_STATE = struct.Struct("<dd")
_STALE_AFTER = 120.0


class MachineRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose schedule is shared by every process of this machine.

    Sailthru counts per account, so four worker processes that each paced themselves to the
    limit would together send four times too much. The next free send slot and any pause live
    in a small file, read and advanced under an exclusive ``flock`` of that file's descriptor for
    each call (about 4 µs, where a ``filelock.FileLock`` opening a lock file per call cost
    237 µs of CPU); the times are the machine's monotonic clock, which every process shares.
    Where ``fcntl`` is missing (Windows), a ``filelock.FileLock`` beside the file does the job.
    """

    def __init__(self, rate: float, path: Path, *, headroom: float = DEFAULT_HEADROOM) -> None:
        super().__init__(rate, headroom=headroom)
        self._path = path
        # The limit learned from replies, by this or another process (0: none yet).
        self._learned = 0.0
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._file_lock: contextlib.AbstractContextManager[object] = (
            _Flock(self._fd) if fcntl is not None else FileLock(f"{path}.lock")
        )

    def __repr__(self) -> str:
        return f"MachineRateLimiter(rate={self.rate:g}/s, path={str(self._path)!r})"

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self._fd)

    def _shared(self, now: float) -> tuple[float, float]:
        """(next free slot, paused until) as the other processes left them; adopts the limit
        another process learned (lock held)."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        data = os.read(self._fd, _STATE.size)
        if len(data) < _OLD_STATE.size:
            return -math.inf, -math.inf
        if len(data) < _STATE.size:
            data = data[: _OLD_STATE.size] + struct.pack("<d", 0.0)
        next_slot, paused_until, learned = _STATE.unpack(data)
        if learned > 0 and math.isfinite(learned):
            # Sailthru counts per account: a limit any process learned is everyone's.
            self._rate = learned
            self._learned = learned
        # Times far ahead come from before a reboot (the monotonic clock restarted): stale.
        if next_slot > now + _STALE_AFTER or paused_until > now + _STALE_AFTER:
            return -math.inf, -math.inf
        return next_slot, paused_until

    def _store(self, next_slot: float, paused_until: float) -> None:
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, _STATE.pack(next_slot, paused_until, self._learned))

    def reserve(self, now: float) -> float:
        """Book the machine's next send slot; return the time at which the caller may send."""
        with self._lock, self._file_lock:
            next_slot, paused_until = self._shared(now)
            slot = max(self._start(now, next_slot), paused_until, self._paused_until)
            self._store(self._after(slot), paused_until)
            return slot

    def pause(self, now: float, seconds: float) -> None:
        """Let nothing through, from any process of this machine, for ``seconds``."""
        super().pause(now, seconds)
        with self._lock, self._file_lock:
            next_slot, paused_until = self._shared(now)
            self._store(next_slot, max(paused_until, now + max(seconds, 0.0)))

    def observe(
        self,
        now: float,
        *,
        limit_per_minute: float | None = None,
        remaining: float | None = None,
        reset_in: float | None = None,
        reset_at: float | None = None,
        refused: bool = False,
    ) -> bool:
        """As :meth:`RateLimiter.observe`; a newly learned limit is written to the shared file
        so that every process of the machine (and any that starts later) paces against it."""
        before = self._rate
        burst = super().observe(
            now, limit_per_minute=limit_per_minute, remaining=remaining,
            reset_in=reset_in, reset_at=reset_at, refused=refused,
        )
        if (
            limit_per_minute is not None
            and limit_per_minute > 0
            and math.isfinite(limit_per_minute)
            and self._rate != self._learned
        ):
            with self._lock, self._file_lock:
                learned = self._rate
                next_slot, paused_until = self._shared(now)
                self._rate = self._learned = learned
                if learned < before and next_slot > now:
                    # As in RateLimiter.observe: slots booked ahead are booked again.
                    next_slot = now + 1.0 / self._pace(now)
                self._store(next_slot, paused_until)
        return burst

    def _lowered_since(self, booked_at: float, now: float) -> bool:
        """Whether any process of the machine learned a limit below ``booked_at``."""
        with self._lock, self._file_lock:
            self._shared(now)
        return self._rate < booked_at


class _Flock(contextlib.AbstractContextManager["_Flock"]):
    """An exclusive ``flock`` on an open descriptor: excludes other processes (and other
    descriptors of the same file); threads of one limiter are kept apart by its own lock."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> _Flock:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


class MachineRateLimiterRegistry(RateLimiterRegistry):
    """Limiters whose schedules are shared by every process of this machine, in ``folder``.

    Files are named by a digest of (account, method, endpoint), so neither the API key nor
    the URL lands on disk. Use it only with the real monotonic clock.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        limits: Mapping[str, float] | None = None,
        *,
        headroom: float = DEFAULT_HEADROOM,
    ) -> None:
        super().__init__(limits, headroom=headroom)
        self._folder = Path(folder)
        self._folder.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"MachineRateLimiterRegistry({str(self._folder)!r})"

    def _make(self, key: tuple[str, str, str], rate: float, headroom: float) -> RateLimiter:
        digest = hashlib.sha256("\0".join(key).encode("utf-8")).hexdigest()[:32]
        return MachineRateLimiter(rate, self._folder / f"pace-{digest}", headroom=headroom)


_MACHINE: dict[tuple[str, tuple[tuple[str, float], ...]], MachineRateLimiterRegistry] = {}
_MACHINE_GUARD = threading.Lock()


def machine_limiters(
    folder: str | os.PathLike[str] | None = None, limits: Mapping[str, float] | None = None
) -> MachineRateLimiterRegistry:
    """The registry shared by every process of this machine that uses the same ``folder``.

    ``folder`` defaults to the list locks' folder (:func:`~.locks.default_lock_dir`);
    ``limits`` gives the starting rates until replies tell the account's real ones. One
    registry object per folder and table in this process, so its threads queue locally first.
    """
    where = str(Path(folder) if folder is not None else default_lock_dir())
    table = tuple(sorted((limits or DEFAULT_RATE_LIMITS).items()))
    with _MACHINE_GUARD:
        registry = _MACHINE.get((where, table))
        if registry is None:
            registry = MachineRateLimiterRegistry(where, dict(table))
            _MACHINE[(where, table)] = registry
        return registry
