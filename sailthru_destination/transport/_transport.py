"""The hot path of every signed call: a form POST or a query GET/DELETE over urllib3's pool.

``requests`` spends about a millisecond of CPU per call merging session settings, preparing
the request through hooks and typing checks, and building a ``Response``: more than signing,
pacing and logging together. Every signed Sailthru call is the same small thing (four form
fields, no cookies, no redirects, no auth), so it goes straight to urllib3, the transport
``requests`` itself uses, with the same TLS verification (requests' CA bundle, certificates
required) and the same timeouts. Failures are raised as the ``requests`` exceptions the
adapter would raise, so what a failure means is decided in one place (:mod:`.retries`).

Calls through a proxy, with a file, or to the tracking service keep going through the
``requests`` session (:func:`._http.pooled_session`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import requests
import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util.retry import Retry

from .._version import __version__

__all__ = ["FormTransport", "Reply"]

# What requests' adapter uses with max_retries=0: no retry, connect errors in MaxRetryError.
_NO_RETRY = Retry(0, read=False)
_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Reply:
    """A reply's status, body and headers (case-insensitive), whichever path sent the call."""

    status: int
    content: bytes
    headers: Mapping[str, str]

    @classmethod
    def of(cls, response: requests.Response) -> Reply:
        """The reply of a call sent through the ``requests`` session."""
        return cls(response.status_code, response.content, response.headers)


class FormTransport:
    """Sends signed form calls through one thread-safe urllib3 pool of ``maxsize`` connections.

    ``verify`` is requests' setting: a CA bundle path, or anything else for requests' own bundle
    (certificates are always required on this path).
    """

    def __init__(
        self, *, maxsize: int, timeout: tuple[float, float], verify: bool | str | None = True
    ) -> None:
        ca_certs = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=maxsize, block=True, cert_reqs="CERT_REQUIRED", ca_certs=ca_certs
        )
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self._headers = {
            "User-Agent": f"sailthru-destination/{__version__} (urllib3)",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }
        self._form_headers = {**self._headers, "Content-Type": _FORM}

    def __repr__(self) -> str:
        return "FormTransport()"

    def send(self, method: str, url: str, fields: Mapping[str, str]) -> Reply:
        """POST ``fields`` as a form, or GET/DELETE them as the query string."""
        encoded = urlencode(fields)
        try:
            if method == "POST":
                response = self._pool.request(
                    "POST", url, body=encoded.encode("utf-8"), headers=self._form_headers,
                    retries=_NO_RETRY, redirect=False, timeout=self._timeout,
                )
            else:
                response = self._pool.request(
                    method, f"{url}?{encoded}", headers=self._headers,
                    retries=_NO_RETRY, redirect=False, timeout=self._timeout,
                )
        except Exception as exc:
            raise _as_requests_error(exc) from None
        return Reply(response.status, response.data, response.headers)

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()


def _as_requests_error(exc: Exception) -> Exception:
    """``exc`` as the exception requests' HTTPAdapter raises for it (the same mapping)."""
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return requests.exceptions.ConnectTimeout(exc)
        if isinstance(reason, Urllib3SSLError):
            return requests.exceptions.SSLError(exc)
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(exc, Urllib3SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, (ProtocolError, OSError, urllib3.exceptions.HTTPError)):
        return requests.exceptions.ConnectionError(exc)
    return exc
