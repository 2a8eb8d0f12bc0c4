"""Options a host gives the destination, validated when they are built.

Options are plain frozen dataclasses: build them once, share them between
threads, never mutate them.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._protocol import is_loopback_url

__all__ = ["DEFAULT_API_URL", "DEFAULT_TRACKING_URL", "AppOptions"]

DEFAULT_API_URL = "https://api.sailthru.com"
DEFAULT_TRACKING_URL = "https://api.sail-track.com"


def _check_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL with a host, got {url!r}")
    if parts.scheme == "http" and not is_loopback_url(url):
        raise ValueError(
            f"{name} {url!r} is plain http: the API secret's signatures would travel "
            "unencrypted; use https (plain http is allowed only for loopback test servers)"
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class AppOptions:
    """How to reach one Sailthru account.

    ``api_secret`` never appears in ``repr()``. ``api_url`` must be https, except
    for a loopback test server such as :class:`sailthru_destination.testing.FakeSailthru`.
    ``timezone`` is the account's time zone, applied to dates sent without one.
    ``tracking_url`` is Sailthru's page-view tracking service.
    """

    api_key: str
    api_secret: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    timezone: str = "UTC"
    tracking_url: str = DEFAULT_TRACKING_URL

    def __post_init__(self) -> None:
        for name in ("api_key", "api_secret"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string")
        object.__setattr__(self, "api_url", _check_url("api_url", self.api_url))
        object.__setattr__(self, "tracking_url", _check_url("tracking_url", self.tracking_url))
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"timezone {self.timezone!r} is not an IANA time zone name"
                " (e.g. 'America/New_York')"
            ) from exc

    @property
    def masked_key(self) -> str:
        """The API key with all but its last four characters hidden, for logs."""
        return "*" * max(len(self.api_key) - 4, 0) + self.api_key[-4:]
