"""The HTTP front: Segment's tracking API (``/v1/batch``, ``/v1/identify`` ...) as a WSGI app.

What it checks, as Segment's own API does: HTTP Basic with the write key as user name
(compared in constant time), JSON bodies (gzip allowed), 500 KB per request (413 beyond)
and 32 KB per message (400 beyond). It answers ``200 {"success": true}`` only once every
message of the request is committed to the durable queue.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .queue import MessageQueue

__all__ = ["MAX_BATCH_BYTES", "MAX_MESSAGE_BYTES", "SegmentIngest"]

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 500 * 1024
"""Largest request body accepted (after gzip), as Segment documents: 500 KB."""
MAX_MESSAGE_BYTES = 32 * 1024
"""Largest single message accepted, as Segment documents: 32 KB."""

_SINGLE = ("identify", "track", "page", "screen", "group", "alias")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Refused(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SegmentIngest:
    """The WSGI application; ``write_key`` never appears in its repr, logs or answers."""

    def __init__(self, queue: MessageQueue, write_key: str) -> None:
        if not isinstance(write_key, str) or not write_key:
            raise ValueError("the write key is required (--write-key or SEGMENT_WRITE_KEY)")
        self._queue = queue
        self._key = write_key.encode("utf-8")

    def __repr__(self) -> str:
        return f"SegmentIngest(queue={self._queue!r}, write_key=***)"

    def __call__(self, environ: Mapping[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        method = str(environ.get("REQUEST_METHOD", ""))
        try:
            if path == "/health":
                if method not in ("GET", "HEAD"):
                    raise _Refused("405 Method Not Allowed", "use GET")
                return _answer(start, "200 OK", {"ok": True, "queue_depth": self._queue.depth()})
            kind = path.removeprefix("/v1/")
            if not path.startswith("/v1/") or (kind != "batch" and kind not in _SINGLE):
                raise _Refused("404 Not Found", f"no endpoint {path}")
            if method != "POST":
                raise _Refused("405 Method Not Allowed", "use POST")
            self._authenticate(environ)
            messages = _messages(kind, _body(environ))
            added = self._queue.append(messages)
        except _Refused as refused:
            log.info("refused %s %s: %s", method, path, refused.message)
            code = refused.status.split(" ", 1)[1].lower().replace(" ", "_")
            body = {"success": False, "code": code, "message": refused.message}
            return _answer(start, refused.status, body)
        log.debug("accepted %d message(s) on %s, %d new", len(messages), path, added)
        return _answer(start, "200 OK", {"success": True})

    def _authenticate(self, environ: Mapping[str, Any]) -> None:
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, encoded = header.partition(" ")
        user = b""
        if scheme.lower() == "basic":
            try:
                user = base64.b64decode(encoded.strip(), validate=True).partition(b":")[0]
            except (binascii.Error, ValueError):
                user = b""
        # compare_digest takes as long whatever prefix matches: no timing oracle on the key.
        if not hmac.compare_digest(user, self._key):
            raise _Refused("401 Unauthorized", "the write key is missing or wrong")


def _body(environ: Mapping[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise _Refused("400 Bad Request", "Content-Length is not a number") from None
    if length > MAX_BATCH_BYTES:
        raise _Refused("413 Payload Too Large", f"a request is limited to {MAX_BATCH_BYTES} bytes")
    raw: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
    encoding = str(environ.get("HTTP_CONTENT_ENCODING", "")).strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise _Refused("415 Unsupported Media Type", f"unknown Content-Encoding {encoding!r}")
    # Bounded inflation: a small gzip bomb must not become a huge body.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
    except zlib.error:
        raise _Refused("400 Bad Request", "the body is not valid gzip") from None
    if len(body) > MAX_BATCH_BYTES or inflater.unconsumed_tail:
        raise _Refused("413 Payload Too Large", f"a request is limited to {MAX_BATCH_BYTES} bytes")
    return body


def _messages(kind: str, body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: 500 KB of "[[[[..." nests deeper than any message does.
        raise _Refused("400 Bad Request", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise _Refused("400 Bad Request", "the body is not a JSON object")
    if kind == "batch":
        batch = data.get("batch")
        if not isinstance(batch, list):
            raise _Refused("400 Bad Request", "a batch request holds a 'batch' list")
        context = data.get("context")
        messages = []
        for index, message in enumerate(batch):
            if not isinstance(message, dict):
                raise _Refused("400 Bad Request", f"batch[{index}] is not an object")
            own = message.get("context")
            if isinstance(context, dict) and (own is None or isinstance(own, dict)):
                # batch-level context, as analytics.js sends it; the message's own wins
                message = {**message, "context": {**context, **(own or {})}}
            messages.append(message)
    else:
        messages = [{**data, "type": data.get("type") or kind}]
    for index, message in enumerate(messages):
        size = len(json.dumps(message, separators=(",", ":")).encode("utf-8"))
        if size > MAX_MESSAGE_BYTES:
            raise _Refused(
                "400 Bad Request",
                f"message {index} is {size} bytes: a message is limited to {MAX_MESSAGE_BYTES}",
            )
        # Every result names its message, and the queue dedupes by it: give one without an
        # id (or with a non-string one) a string id.
        given = message.get("messageId")
        if isinstance(given, bool) or not isinstance(given, (str, int)) or given == "":
            message["messageId"] = f"serve-{uuid.uuid4()}"
        else:
            message["messageId"] = str(given)
    return messages


def _answer(start: StartResponse, status: str, body: Mapping[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode("utf-8")
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if status.startswith("401"):
        headers.append(("WWW-Authenticate", 'Basic realm="segment"'))
    start(status, headers)
    return [data]
