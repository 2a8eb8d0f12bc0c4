"""The plumbing under the API layer: the pooled session, file parts, downloads, redaction.

Nothing here decides anything about Sailthru: :mod:`.api` uses these to send calls and
:mod:`.retries` decides what their failures mean.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
from collections.abc import Collection, Iterator
from http.cookiejar import DefaultCookiePolicy
from typing import IO, Any, BinaryIO, cast
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError

from .._version import __version__
from ..errors import InvalidRequest, NotFound, TransientError
from ._protocol import is_loopback_url

__all__ = [
    "Download",
    "FileData",
    "FilePart",
    "decode",
    "describe",
    "number",
    "open_download",
    "pooled_session",
    "redact_secret",
    "redact_urllib3_logs",
    "without_query",
]

FileData = bytes | str | os.PathLike[str] | IO[bytes]
"""A file for a multipart POST: its bytes, a path, or a binary file object."""


class FilePart:
    """The ``file`` part of a multipart POST, re-readable for each attempt."""

    def __init__(self, data: FileData) -> None:
        self._data = data
        self._start = 0
        if isinstance(data, (str, os.PathLike)):
            self.name = os.path.basename(os.fspath(data))
        elif isinstance(data, bytes):
            self.name = "upload"
        else:
            self.name = os.path.basename(str(getattr(data, "name", "upload")))
            self._start = data.tell()

    def open(self) -> _OpenPart:
        """The part for one attempt: a (filename, content) pair, closed on exit."""
        return _OpenPart(self)

    @property
    def data(self) -> FileData:
        return self._data

    @property
    def start(self) -> int:
        return self._start


class _OpenPart:
    def __init__(self, part: FilePart) -> None:
        self._part = part
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> tuple[str, bytes | IO[bytes]]:
        data = self._part.data
        if isinstance(data, bytes):
            return (self._part.name, data)
        if isinstance(data, (str, os.PathLike)):
            self._handle = open(data, "rb")
            return (self._part.name, self._handle)
        data.seek(self._part.start)
        return (self._part.name, data)

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.close()


def pooled_session(url: str, concurrency: int) -> requests.Session:
    session = requests.Session()
    # Read the environment (proxies, CA bundle) once, not on every call: per call it costs
    # about a quarter of requests' CPU time.
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings["proxies"] or {})
    session.verify = settings["verify"]
    session.trust_env = False
    adapter = HTTPAdapter(
        pool_connections=4, pool_maxsize=concurrency, pool_block=True, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # The session is shared by threads: refuse cookies so it holds no mutable per-call state.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.headers["User-Agent"] = f"sailthru-destination/{__version__} (python-requests)"
    return session


def decode(content: bytes) -> Any:
    """The reply body as JSON, or None when it is not JSON."""
    try:
        return json.loads(content)
    except ValueError:
        return None


def number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


_QUERY = re.compile(r"\?[^\s'\")]*")


def describe(exc: requests.RequestException, *, secrets: Collection[str]) -> str:
    """A short account of a transport failure with no URL query, signature or secret in it."""
    cause: object = exc.args[0] if exc.args else exc
    if isinstance(cause, MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    text = f"{type(exc).__name__}: {cause}"
    text = _QUERY.sub("?<redacted>", text)
    for secret in secrets:
        text = redact_secret(text, secret)
    return text[:300]


_WHOLE_FROM = 8  # a secret this long is hidden wherever it appears


def redact_secret(text: str, secret: str) -> str:
    """``text`` with ``secret`` replaced by ``<redacted>``: everywhere when it is long, and
    only where it stands alone when it is short (a one-character secret ``s`` must not turn
    "self-signed" into "<redacted>elf-<redacted>igned", and cannot hide in a longer word)."""
    if not secret:
        return text
    if len(secret) >= _WHOLE_FROM:
        return text.replace(secret, "<redacted>")
    return re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", "<redacted>", text)


class _RedactQuery(logging.Filter):
    """Hides query strings (api_key, json, sig) in urllib3's DEBUG lines about each request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, str) and "sig=" in arg for arg in record.args
        ):
            record.args = tuple(
                _QUERY.sub("?<redacted>", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


_redaction_lock = threading.Lock()
_redaction_installed = False


def redact_urllib3_logs() -> None:
    """Install the query-hiding filter on urllib3's connection-pool logger, once."""
    global _redaction_installed
    with _redaction_lock:
        if not _redaction_installed:
            logging.getLogger("urllib3.connectionpool").addFilter(_RedactQuery())
            _redaction_installed = True


class Download:
    """An open download: ``with`` gives its text lines and closes the connection after."""

    def __init__(self, response: requests.Response, where: str) -> None:
        self._response = response
        self._where = where
        # utf-8-sig: a file opened and saved by a spreadsheet starts with a byte-order mark.
        self._text = io.TextIOWrapper(
            cast(BinaryIO, response.raw), encoding="utf-8-sig", newline=""
        )

    def __enter__(self) -> Iterator[str]:
        return self._lines()

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self._text.close()
        self._response.close()

    def _lines(self) -> Iterator[str]:
        try:
            yield from self._text
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise TransientError(
                f"the download of {self._where} broke off ({type(exc).__name__})", method="GET"
            ) from None


def without_query(url: str) -> str:
    """``url`` without its query: signed links carry their signature there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def open_download(
    session: requests.Session, url: str, timeout: tuple[float, float]
) -> Download:
    """Open ``url`` (an export file) through ``session`` to read as text lines as it arrives;
    see :meth:`~sailthru_destination.transport.api.SailthruApi.download` for what it raises."""
    where = without_query(url)
    if not url.startswith("https://") and not is_loopback_url(url):
        raise InvalidRequest(f"refusing to download {where} over plain http", method="GET")
    try:
        response = session.get(url, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise TransientError(
            f"could not download {where}: {type(exc).__name__}", method="GET"
        ) from None
    status = response.status_code
    if status >= 400:
        response.close()
        kind = (
            NotFound
            if status in (403, 404, 410)
            else (TransientError if status >= 500 else InvalidRequest)
        )
        raise kind(f"the download of {where} was refused", method="GET", status=status)
    response.raw.decode_content = True
    # Otherwise urllib3 marks the stream closed at its last byte and the text wrapper fails.
    response.raw.auto_close = False
    return Download(response, where)
