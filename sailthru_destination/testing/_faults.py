"""Faults the fake Sailthru can inject, all off by default (what production showed us)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Faults"]


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


@dataclass(frozen=True)
class Faults:
    """Misbehaviour of the real service, reproduced on demand and reproducible under a seed.

    Rates are probabilities per request (0..1); windows are seconds.

    - ``connection_error_rate``: drop the connection without a reply (0.26 % seen in production).
    - ``server_error_rate``: HTTP 500 with error 9, before the request is applied.
    - ``error_after_apply_rate``: apply a POST, then answer HTTP 504 with a gateway's HTML page
      instead of the reply, as a proxy does when Sailthru answers too late: the write happened
      but the caller is told it failed (the case that posts a purchase twice).
    - ``error_with_200_rate``: HTTP 200 carrying an error body (error 9, nothing applied), as
      third-party connectors report; only a client that reads the body first notices.
    - ``false_ok_delete_rate``: DELETE answers 200 ``{"ok": true}`` and does nothing (0.7 % seen).
    - ``list_race_window``: a request naming a list that does not exist creates it only after
      this many seconds, so concurrent first uses create duplicate lists of the same name.
    - ``stale_read_window``: a GET /user this soon after a POST /user sees the user as it was
      before the POST, and a GET /purchase this soon after the POST /purchase does not see the
      purchase yet (eventual consistency).
    - ``stale_read_jitter``: up to this many seconds more, drawn per write from the seeded
      stream, so each write lags by its own random amount (Sailthru documents no bound).
    - ``drop_after_apply_rate``: apply a POST, then drop the connection without a reply: a
      created job still runs, a posted purchase is there, and the caller cannot know.
    - ``rate_limit_burst``: probability of an extra 429 on a request within the limit.
    """

    connection_error_rate: float = 0.0
    server_error_rate: float = 0.0
    error_with_200_rate: float = 0.0
    false_ok_delete_rate: float = 0.0
    list_race_window: float = 0.0
    stale_read_window: float = 0.0
    rate_limit_burst: float = 0.0
    error_after_apply_rate: float = 0.0
    stale_read_jitter: float = 0.0
    drop_after_apply_rate: float = 0.0

    def __post_init__(self) -> None:
        _check_rate("connection_error_rate", self.connection_error_rate)
        _check_rate("server_error_rate", self.server_error_rate)
        _check_rate("error_after_apply_rate", self.error_after_apply_rate)
        _check_rate("drop_after_apply_rate", self.drop_after_apply_rate)
        _check_rate("error_with_200_rate", self.error_with_200_rate)
        _check_rate("false_ok_delete_rate", self.false_ok_delete_rate)
        _check_rate("rate_limit_burst", self.rate_limit_burst)
        if min(self.list_race_window, self.stale_read_window, self.stale_read_jitter) < 0:
            raise ValueError(
                "list_race_window, stale_read_window and stale_read_jitter must not be negative")
