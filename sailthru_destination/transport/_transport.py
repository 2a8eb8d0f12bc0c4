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

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util import parse_url
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


class _OneWrite(HTTPConnection):
    """Writes a request's head and body to the socket at once.

    ``http.client`` writes the head, then the body: two system calls, two segments, and two
    reads for the server. With many threads each system call also means taking the GIL back,
    often after a wait; one write per call is measurably cheaper (``bench/README.md``).
    """

    _held: list[bytes] | None = None

    def request(
        self, method: str, url: str, body: Any = None, headers: Any = None, **options: Any
    ) -> None:
        self._held = []
        try:
            super().request(method, url, body=body, headers=headers, **options)
            data = b"".join(self._held)
        finally:
            self._held = None
        super().send(data)  # connects first when the connection is new

    def send(self, data: Any) -> None:
        if self._held is not None and isinstance(data, bytes):
            self._held.append(data)
        else:
            super().send(data)


class _OneWriteTLS(_OneWrite, HTTPSConnection):
    """:class:`_OneWrite` over TLS."""


class _Pool(HTTPConnectionPool):
    ConnectionCls = _OneWrite


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _OneWriteTLS


class FormTransport:
    """Sends signed form calls through one thread-safe urllib3 pool of ``maxsize`` connections.

    ``verify`` is requests' setting: a CA bundle path, or anything else for requests' own bundle
    (certificates are always required on this path).
    """

    def __init__(
        self, *, maxsize: int, timeout: tuple[float, float], verify: bool | str | None = True
    ) -> None:
        self._ca_certs = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
        self._maxsize = maxsize
        # One pool per host, and the pool and path of each URL called, found once: going
        # through urllib3's PoolManager parses the URL and builds a pool key on every call.
        self._pools: dict[tuple[str, str, int | None], HTTPConnectionPool] = {}
        self._targets: dict[str, tuple[HTTPConnectionPool, str]] = {}
        self._guard = threading.Lock()
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
            pool, path = self._target(url)
            if method == "POST":
                response = pool.urlopen(
                    "POST", path, body=encoded.encode("utf-8"), headers=self._form_headers,
                    retries=_NO_RETRY, redirect=False, timeout=self._timeout,
                )
            else:
                separator = "&" if "?" in path else "?"
                response = pool.urlopen(
                    method, f"{path}{separator}{encoded}", headers=self._headers,
                    retries=_NO_RETRY, redirect=False, timeout=self._timeout,
                )
        except Exception as exc:
            raise _as_requests_error(exc) from None
        return Reply(response.status, response.data, response.headers)

    def _target(self, url: str) -> tuple[HTTPConnectionPool, str]:
        """The pool for ``url``'s host and the path to ask for (a call's URL is its
        endpoint's, so there are a few dozen at most)."""
        target = self._targets.get(url)
        if target is not None:
            return target
        parts = parse_url(url)
        if parts.scheme not in ("http", "https") or not parts.host:
            raise urllib3.exceptions.LocationValueError("not an http(s) URL")
        key = (parts.scheme, parts.host, parts.port)
        with self._guard:
            pool = self._pools.get(key)
            if pool is None:
                if parts.scheme == "https":
                    pool = _TLSPool(
                        parts.host, parts.port, maxsize=self._maxsize, block=True,
                        cert_reqs="CERT_REQUIRED", ca_certs=self._ca_certs,
                    )
                else:
                    pool = _Pool(parts.host, parts.port, maxsize=self._maxsize, block=True)
                self._pools[key] = pool
            target = self._targets[url] = (pool, parts.request_uri)
        return target

    def close(self) -> None:
        """Close the pooled connections."""
        with self._guard:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
            self._targets.clear()


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
