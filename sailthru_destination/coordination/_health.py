"""How Redis failing is reported: :class:`CoordinationError`, and failing fast for a while after.

Every message names the server by its redacted URL, and text from redis-py is scrubbed of the
URL's secrets before it goes into an error or a log line.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from ..errors import SailthruError
from ._url import scrub

__all__ = ["CoordinationError", "Health", "digest"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class CoordinationError(SailthruError):
    """Redis, which coordinates the workers, cannot be used: nothing was sent to Sailthru.

    Retryable: the record can be sent again once Redis answers. Raised by the lock, the
    known-lists cache and the limiters; batches report it per record like any retryable
    :class:`~.errors.SailthruError`.
    """

    default_retryable = True

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)

    def __str__(self) -> str:
        return f"coordination failed: {self.message.rstrip('. ')}. It may succeed if retried."


def digest(*parts: str) -> str:
    # Keys carry a digest, never an API key or a list name as such.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class Health:
    """Fails fast for ``cooldown`` seconds after Redis failed, then lets one attempt through."""

    def __init__(
        self,
        where: str,
        cooldown: float,
        clock: Callable[[], float],
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._where = where
        self._secrets = secrets
        self._cooldown = cooldown
        self._clock = clock
        self._failed_until = -math.inf
        self._last_error = ""

    @property
    def failed(self) -> bool:
        """Whether Redis failed less than ``cooldown`` seconds ago."""
        return self._clock() < self._failed_until

    def run(self, what: str, action: Callable[[], _T]) -> _T:
        """``action()``; a Redis failure becomes a :class:`CoordinationError` naming ``what``."""
        if self.failed:
            raise CoordinationError(
                f"Redis at {self._where} failed recently ({self._last_error}); not trying to "
                f"{what} until it has had {self._cooldown:g}s to recover"
            )
        try:
            return action()
        except RedisError as exc:
            detail = scrub(str(exc), self._secrets)
            self._last_error = f"{type(exc).__name__}: {detail}"
            self._failed_until = self._clock() + self._cooldown
            log.error("Redis at %s failed while trying to %s: %s", self._where, what, detail)
            raise CoordinationError(
                f"Redis at {self._where} failed while trying to {what} ({self._last_error})"
            ) from None


