"""Sailthru protocol facts shared by the API layer and the fake server.

Kept in one place so that the client and the test double cannot drift apart:
the signature algorithm, the error codes, the documented rate limits and the
names Sailthru refuses.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
from collections.abc import Mapping
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit

from sailthru.sailthru_client import get_signature_hash

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "PAGEVIEW_ENDPOINT",
    "RATE_LIMIT_ENDPOINTS",
    "RATE_LIMIT_METHODS",
    "RESERVED_EVENT_NAMES",
    "ErrorCode",
    "check_rate_limits",
    "is_loopback_url",
    "known_rate_limit_keys",
    "rate_limit_for",
    "sign",
    "signature_matches",
]


class ErrorCode(IntEnum):
    """Sailthru's documented error codes (the ``error`` field of an error body)."""

    UNSUPPORTED_METHOD = 1
    INVALID_PARAMETER = 2
    INVALID_API_KEY = 3
    DISALLOWED_IP = 4
    AUTHENTICATION_FAILED = 5
    INTERNAL_ERROR = 9
    INVALID_EMAIL = 11
    UNKNOWN_LIST = 15
    TOO_MANY_REQUESTS = 43
    OTHER = 99


# Requests per second, the documented defaults (Sailthru counts per minute: x60).
# Keys are looked up from the most to the least specific:
# "<METHOD> <endpoint>", "<endpoint>", "<METHOD>", "default".
DEFAULT_RATE_LIMITS: Mapping[str, float] = {
    "POST user": 300.0,
    "GET": 300.0,
    "POST send": 200.0,
    "DELETE": 40.0,
    "default": 40.0,
}

PAGEVIEW_ENDPOINT = "v1/track/event/pageview"
"""The tracking service's page-view path (under ``AppOptions.tracking_url``)."""

# Event names /event refuses with HTTP 400: they collide with Sailthru's own events.
RESERVED_EVENT_NAMES: frozenset[str] = frozenset(
    {"send", "cancel", "open", "click", "purchase", "daily"}
)


def rate_limit_for(limits: Mapping[str, float], method: str, endpoint: str) -> float:
    """The requests-per-second limit that applies to one method and endpoint.

    ``limits`` uses the keys of :data:`DEFAULT_RATE_LIMITS`; a table without a
    matching key and without ``"default"`` falls back to the documented defaults.
    """
    method = method.upper()
    endpoint = endpoint.strip("/")
    for key in (f"{method} {endpoint}", endpoint, method, "default"):
        if key in limits:
            return float(limits[key])
    if limits is DEFAULT_RATE_LIMITS:
        raise KeyError("DEFAULT_RATE_LIMITS has no 'default' entry")
    return rate_limit_for(DEFAULT_RATE_LIMITS, method, endpoint)


RATE_LIMIT_ENDPOINTS: frozenset[str] = frozenset(
    {"user", "list", "event", "purchase", "return", "job", "send", "blast", PAGEVIEW_ENDPOINT}
)
"""The endpoints a rate-limit table may name (those this library calls)."""
RATE_LIMIT_METHODS: frozenset[str] = frozenset({"GET", "POST", "DELETE"})


def known_rate_limit_keys() -> str:
    """The forms a rate-limit key may take, for error messages."""
    return (
        "ENDPOINT, 'METHOD ENDPOINT', METHOD or 'default', with ENDPOINT one of "
        + ", ".join(sorted(RATE_LIMIT_ENDPOINTS))
        + " and METHOD one of "
        + ", ".join(sorted(RATE_LIMIT_METHODS))
    )


def check_rate_limits(limits: Mapping[str, object]) -> dict[str, float]:
    """``limits`` as a table of calls per second, or ValueError naming the bad key or value.

    Keys take the forms of :data:`DEFAULT_RATE_LIMITS` for an endpoint this library calls
    (a typo would otherwise be ignored silently); values are positive finite numbers (a
    string, 0, a negative number, NaN or infinity has no meaning as a pace).
    """
    table: dict[str, float] = {}
    for key, value in limits.items():
        words = key.split() if isinstance(key, str) else []
        if len(words) == 2:
            known = words[0] in RATE_LIMIT_METHODS and words[1].strip("/") in RATE_LIMIT_ENDPOINTS
        elif len(words) == 1:
            known = (
                words[0] == "default"
                or words[0] in RATE_LIMIT_METHODS
                or words[0].strip("/") in RATE_LIMIT_ENDPOINTS
            )
        else:
            known = False
        if not known:
            raise ValueError(
                f"rate limit {key!r}: unknown key; use {known_rate_limit_keys()}"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(
                f"rate limit {key!r}: wants a positive finite number of calls per second, "
                f"got {value!r}"
            )
        table[key] = float(value)
    return table


def sign(params: Mapping[str, Any], secret: str) -> str:
    """Sailthru's signature of ``params`` (all values but ``sig``), as sailthru-client makes it."""
    unsigned = {k: v for k, v in params.items() if k != "sig"}
    return str(get_signature_hash(unsigned, secret))


def signature_matches(params: Mapping[str, Any], secret: str) -> bool:
    """Whether ``params["sig"]`` is the right signature, compared in constant time."""
    given = params.get("sig")
    if not isinstance(given, str) or not given:
        return False
    expected = sign(params, secret)
    return hmac.compare_digest(given.lower().encode("utf-8"), expected.encode("utf-8"))


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
