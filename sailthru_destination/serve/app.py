"""The HTTP front: Segment's tracking API (``/v1/batch``, ``/v1/identify`` ...) as a WSGI app.

What it checks, as Segment's own API does: HTTP Basic with the write key as user name
(compared in constant time), JSON bodies (gzip allowed), 500 KB per request (413 beyond)
and 32 KB per message (refused one by one, see :mod:`.intake`). It answers
``200 {"success": true}`` only once every accepted message of the request is committed to the
durable queue. While the queue is over its limits it answers ``429`` with ``Retry-After``
(Segment's SDKs wait and send again); a full disk or a stopping server answers ``503``.
``GET /health`` reports the queue and whether intake is open; ``GET /metrics`` the
Prometheus metrics (with the ``metrics`` extra).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from .intake import KINDS, Parsed, Refused, messages_of, read_body
from .limits import QueueLimits
from .queue import DiskFull, Encoded, MessageQueue, Stored

__all__ = ["QueueLimits", "SegmentIngest", "authorized", "check_write_key"]

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

DUPLICATE = "another message with this messageId was already accepted"
"""Why a message that reuses an accepted ``messageId`` with other content is refused."""


class Metrics(Protocol):
    """What the app reports to (see :mod:`.metrics`); every method must be cheap."""

    def accepted(self, count: int) -> None: ...  # pragma: no cover - protocol

    def refused(self, reason: str, count: int = 1) -> None: ...  # pragma: no cover

    def exposition(self) -> tuple[bytes, str]: ...  # pragma: no cover


def check_write_key(write_key: object) -> str:
    """``write_key`` if a sender can present it over HTTP Basic, else ValueError saying why."""
    if not isinstance(write_key, str) or not write_key:
        raise ValueError("the write key is required (--write-key or SEGMENT_WRITE_KEY)")
    if ":" in write_key:
        # Basic sends "user:password": a key holding ':' is cut there, so it never matches.
        raise ValueError("the write key must not contain ':' (no sender can present it)")
    return write_key


def authorized(header: str, key: bytes) -> bool:
    """Whether an ``Authorization`` header carries ``key`` as HTTP Basic user name."""
    scheme, _, encoded = header.partition(" ")
    user = b""
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(encoded.strip(), validate=True).partition(b":")[0]
        except (binascii.Error, ValueError):
            user = b""
    # compare_digest takes as long whatever prefix matches: no timing oracle on the key.
    return hmac.compare_digest(user, key)


class SegmentIngest:
    """The WSGI application; ``write_key`` never appears in its repr, logs or answers."""

    def __init__(
        self,
        queue: MessageQueue,
        write_key: str,
        *,
        limits: QueueLimits | None = None,
        metrics: Metrics | None = None,
        on_duplicate: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """``on_duplicate(message_id, reason, where)`` hears of each message refused because
        another one already holds its ``messageId`` (the server writes it to ``skipped.jsonl``)."""
        self._queue = queue
        self._on_duplicate = on_duplicate
        self._key = check_write_key(write_key).encode("utf-8")
        self.limits = limits or QueueLimits()
        self._metrics = metrics
        self._closing = False
        self._refused: str | None = None
        self._disk_full = False

    def __repr__(self) -> str:
        return f"SegmentIngest(queue={self._queue!r}, write_key=***)"

    @property
    def key(self) -> bytes:
        """The write key's bytes, for the server's check before reading a body."""
        return self._key

    def count_refused(self, reason: str) -> None:
        """Count a request the server refused before it reached the app (no body read)."""
        if self._metrics is not None:
            self._metrics.refused(reason)

    def close_intake(self) -> None:
        """Answer 503 to every new message from now on (the server is stopping)."""
        self._closing = True

    def sailthru_refuses(self, sentence: str | None) -> None:
        """Sailthru refused the credentials (``sentence`` says how), or (None) accepted them
        again: while refused, intake answers 503 so senders keep their messages."""
        if sentence is not None and self._refused is None:
            log.error("closing intake (503) while Sailthru refuses the credentials")
        elif sentence is None and self._refused is not None:
            log.info("Sailthru accepts the credentials again: intake open")
        self._refused = sentence

    def intake(self) -> str:
        """``open``, ``full`` (answering 429), ``disk_full`` or ``refused`` (answering 503:
        no room on the disk, Sailthru refuses the credentials) or ``closed`` (stopping: 503)."""
        if self._closing:
            return "closed"
        if self._refused is not None:
            return "refused"
        if self._disk_full:
            return "disk_full"
        limits = self.limits
        if self._queue.depth() >= limits.max_messages or self._queue.size() >= limits.max_bytes:
            return "full"
        return "open"

    def health(self) -> dict[str, Any]:
        """What ``/health`` answers: the queue's depth, bytes and oldest age, and the intake."""
        intake = self.intake()
        health: dict[str, Any] = {
            "ok": intake in ("open", "full"),
            "intake": intake,
            "queue_depth": self._queue.depth(),
            "queue_bytes": self._queue.size(),
            "oldest_age_seconds": round(self._queue.oldest_age(), 3),
        }
        if self._refused is not None:
            health["sailthru"] = self._refused
        return health

    def __call__(self, environ: Mapping[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        method = str(environ.get("REQUEST_METHOD", ""))
        try:
            if path in ("/health", "/metrics"):
                if method not in ("GET", "HEAD"):
                    raise Refused("405 Method Not Allowed", "use GET", "bad_request")
                if path == "/health":
                    health = self.health()
                    return _answer(start, "200 OK" if health["ok"] else _UNAVAILABLE, health)
                return self._exposition(start)
            kind = path.removeprefix("/v1/")
            if not path.startswith("/v1/") or kind not in KINDS:
                raise Refused("404 Not Found", f"no endpoint {path}", "bad_request")
            if method != "POST":
                raise Refused("405 Method Not Allowed", "use POST", "bad_request")
            if not authorized(str(environ.get("HTTP_AUTHORIZATION", "")), self._key):
                raise Refused("401 Unauthorized", "the write key is missing or wrong", "auth")
            return self._take(kind, environ, start)
        except Refused as refused:
            log.info("refused %s %s: %s", method, path, refused.message,
                     extra={"outcome": f"refused:{refused.reason}"})  # fmt: skip
            if self._metrics is not None and path.startswith("/v1/"):
                self._metrics.refused(refused.reason)
            return _refusal(start, refused)

    def _take(self, kind: str, environ: Mapping[str, Any], start: StartResponse) -> list[bytes]:
        state = self.intake()
        if state == "closed":
            raise Refused(_UNAVAILABLE, "the server is stopping: send again", "closing",
                          self.limits.retry_after)  # fmt: skip
        if state == "refused":
            raise Refused(_UNAVAILABLE, "Sailthru refuses this server's credentials: send "
                          "again later", "sailthru_refused", self.limits.retry_after)  # fmt: skip
        if state == "full":
            raise Refused(
                "429 Too Many Requests",
                "the queue is full: send again later",
                "queue_full",
                self.limits.retry_after,
            )
        parsed = messages_of(kind, read_body(environ))
        for refused in parsed.refused:
            why = f"refused:{refused['reason']}"
            outcome = {"message_id": refused["messageId"], "outcome": why}
            log.warning("refused message %s of /v1/%s: %s", refused["index"], kind,
                        refused["message"], extra=outcome)  # fmt: skip
            if self._metrics is not None:
                self._metrics.refused(str(refused["reason"]))
        if not parsed.accepted:
            first = parsed.refused[0] if parsed.refused else None
            sentence = first["message"] if first else "the batch holds no message"
            body = {"success": False, "code": "bad_request", "message": sentence,
                    "refused": parsed.refused}  # fmt: skip
            return _answer(start, "400 Bad Request", body)
        try:
            stored = self._queue.store(parsed.accepted)
        except DiskFull as exc:
            # /health says so until a write goes through again (each request still tries).
            self._disk_full = True
            log.error("the queue cannot be written (%s): answering 503 until there is room", exc)
            raise Refused(_UNAVAILABLE, "the server's disk is full: send again later",
                          "disk_full", self.limits.retry_after) from None  # fmt: skip
        self._disk_full = False
        added = stored.added
        if self._metrics is not None:
            self._metrics.accepted(added)
        if stored.left_out:
            self._duplicates(kind, parsed, stored)
        log.debug("accepted %d message(s) on /v1/%s, %d new", len(parsed.accepted), kind, added)
        answer: dict[str, Any] = {"success": True}
        if parsed.refused:
            answer["refused"] = parsed.refused
        return _answer(start, "200 OK", answer)

    def _duplicates(self, kind: str, parsed: Parsed, stored: Stored) -> None:
        """Say what became of the messages left out because their ``messageId`` was taken.

        An identical resend (a sender retrying after a lost 200) is only counted and logged;
        one with other content is also refused by name in the answer and in ``skipped.jsonl``:
        it was not stored, and its sender must learn so.
        """
        if self._metrics is not None:
            self._metrics.refused("duplicate", len(stored.left_out))
        positions = _batch_positions(parsed)
        differing = set(stored.conflicts)
        for position in stored.left_out:
            encoded = parsed.accepted[position]
            index = positions[position]
            fields = {"message_id": encoded.message_id, "outcome": "refused:duplicate"}
            if position not in differing:
                log.info("message %s of /v1/%s: messageId %s was already accepted, not stored "
                         "again", index, kind, encoded.message_id, extra=fields)  # fmt: skip
                continue
            log.warning("refused message %s of /v1/%s (messageId %s): %s", index, kind,
                        encoded.message_id, DUPLICATE, extra=fields)  # fmt: skip
            parsed.refused.append({"index": index, "messageId": encoded.message_id,
                                   "reason": "duplicate", "message": DUPLICATE})  # fmt: skip
            if self._on_duplicate is not None:
                self._on_duplicate(encoded.message_id, f"{_who(encoded)}: {DUPLICATE}",
                                   f"/v1/{kind} message {index}")  # fmt: skip
        parsed.refused.sort(key=lambda refused: int(refused["index"]))

    def _exposition(self, start: StartResponse) -> list[bytes]:
        if self._metrics is None:
            raise Refused(
                "404 Not Found",
                "metrics need prometheus-client: pip install 'sailthru-destination[metrics]'",
                "bad_request",
            )
        data, content_type = self._metrics.exposition()
        start("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(data)))])
        return [data]


_UNAVAILABLE = "503 Service Unavailable"


def _batch_positions(parsed: Parsed) -> list[int]:
    """The index in the request of each accepted message (the refused ones hold the rest)."""
    refused = {int(entry["index"]) for entry in parsed.refused}
    positions: list[int] = []
    index = 0
    while len(positions) < len(parsed.accepted):
        if index not in refused:
            positions.append(index)
        index += 1
    return positions


def _who(encoded: Encoded) -> str:
    """``"track message of user bob"``: what a refused duplicate was, for the report."""
    try:
        message = json.loads(encoded.body)
    except (ValueError, RecursionError):
        return "the message"
    if not isinstance(message, dict):
        return "the message"
    kind = message.get("type") or "a"
    user = message.get("userId") or message.get("anonymousId")
    return f"{kind} message of user {user}" if user is not None else f"{kind} message"


def _refusal(start: StartResponse, refused: Refused) -> list[bytes]:
    code = refused.status.split(" ", 1)[1].lower().replace(" ", "_")
    body = {"success": False, "code": code, "message": refused.message}
    headers = [("Retry-After", str(refused.retry_after))] if refused.retry_after else []
    return _answer(start, refused.status, body, headers)


def _answer(
    start: StartResponse,
    status: str,
    body: Mapping[str, Any],
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body).encode("utf-8")
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if status.startswith("401"):
        headers.append(("WWW-Authenticate", 'Basic realm="segment"'))
    start(status, [*headers, *(extra or [])])
    return [data]
