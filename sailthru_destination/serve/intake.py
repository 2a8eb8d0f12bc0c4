"""What one request holds: its body read within the limits, and its messages, each checked alone.

A request is refused whole (:class:`Refused`) only when it cannot be read as a Segment request at
all: over 500 KB, not gzip or cut short, not UTF-8, not JSON, not an object. Inside a batch, each
message is checked by itself; a bad one (not an object, over 32 KB, holding a lone UTF-16
surrogate, nested too deep or holding a number too long for Python) is named in the answer and
the others are still accepted.

A message is stored as the text it arrived as (see :mod:`.as_received`) unless the server must
change it: a batch-level ``context`` merged in, a ``messageId`` given or made a string, a
single-message endpoint's ``type``; those, and anything unusual, are decoded and encoded anew.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import NoneType
from typing import Any

from .as_received import Batch, Unreadable, lone_surrogate, read_batch
from .queue import Encoded, utf8_size

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "STORED_PER_BODY_BYTE",
    "Parsed",
    "Refused",
    "messages_of",
    "read_body",
]

MAX_BATCH_BYTES = 500 * 1024
"""Largest request body accepted (after gzip), as Segment documents: 500 KB."""
MAX_MESSAGE_BYTES = 32 * 1024
"""Largest single message accepted, as Segment documents: 32 KB."""
STORED_PER_BODY_BYTE = 4
"""A request may store at most this many bytes (as written to the queue, after the batch-level
``context`` is merged into each message) per byte of its (inflated) body, or
:data:`MIN_STORED_BYTES` for a smaller request: a small request must not become a huge queue."""
MIN_STORED_BYTES = 4 * 1024
"""What any request may store (a tiny message grows by the id and type the server adds)."""

NUMBER_ID_PREFIX = "serve-number-"
"""A ``messageId`` given as a JSON number ``7`` is stored as the string ``serve-number-7``."""

_SINGLE = ("identify", "track", "page", "screen", "group", "alias")
KINDS = ("batch", *_SINGLE)
"""The ``/v1/<kind>`` endpoints."""

_READ_CHUNK = 64 * 1024
# One encoder for every message: json.dumps would build one per call with these options.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class Refused(Exception):
    """The whole request is refused with ``status``; ``reason`` labels it in the metrics."""

    def __init__(self, status: str, message: str, reason: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Parsed:
    """The messages of one request: those to store, and those refused one by one."""

    accepted: list[Encoded] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    """``{"index", "messageId", "reason", "message"}`` of each refused message."""


def read_body(environ: Mapping[str, Any]) -> bytes:
    """The request body, inflated when gzip; never more than :data:`MAX_BATCH_BYTES`."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise Refused("400 Bad Request", "Content-Length is not a number", "bad_request") from None
    if length > MAX_BATCH_BYTES:
        raise _too_large()
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    left = length
    while left > 0:  # read in chunks: a lying Content-Length costs no more than the limit
        chunk: bytes = stream.read(min(left, _READ_CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    raw = b"".join(parts)
    encoding = str(environ.get("HTTP_CONTENT_ENCODING", "")).strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise Refused(
            "415 Unsupported Media Type", f"unknown Content-Encoding {encoding!r}", "bad_request"
        )
    # Bounded inflation: a small gzip bomb must not become a huge body.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
    except zlib.error:
        raise Refused("400 Bad Request", "the body is not valid gzip", "bad_gzip") from None
    if len(body) > MAX_BATCH_BYTES or inflater.unconsumed_tail:
        raise _too_large()
    if not inflater.eof:
        raise Refused("400 Bad Request", "the gzip body is cut short", "bad_gzip")
    return body


def _amplified() -> Refused:
    return Refused(
        "413 Payload Too Large",
        "the batch-level context copied into each message would store more than "
        f"{STORED_PER_BODY_BYTE} times the request: send it in each message",
        "amplification",
    )


def _too_large() -> Refused:
    return Refused(
        "413 Payload Too Large", f"a request is limited to {MAX_BATCH_BYTES} bytes", "too_large"
    )


def messages_of(kind: str, body: bytes) -> Parsed:
    """The messages of a ``/v1/<kind>`` request body, each encoded for the queue or refused."""
    if kind == "batch":
        batch = read_batch(body)
        if batch is not None:
            return _as_received(batch, _budget(body))
    return _decoded(kind, body)


def _decoded(kind: str, body: bytes) -> Parsed:
    """The general road: ``body`` decoded whole, every message encoded anew (or refused)."""
    try:
        # Strictly UTF-8 (a BOM allowed): json.loads on bytes would guess UTF-16 or UTF-32.
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Refused("400 Bad Request", "the body is not UTF-8", "bad_json") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        # Valid JSON Python cannot decode (an integer of more than 4300 digits, nesting past
        # the recursion limit) in one message of a batch refuses that message, not the batch.
        batch = read_batch(text.encode("utf-8"), lenient=True) if kind == "batch" else None
        if batch is None:
            raise Refused("400 Bad Request", _not_json(text), "bad_json") from None
        return _as_received(batch, _budget(body))
    if not isinstance(data, dict):
        raise Refused("400 Bad Request", "the body is not a JSON object", "bad_json")
    if kind != "batch":
        # The endpoint names the type, as Segment's API does: a "type" in the body is ignored.
        candidates: list[Any] = [{**data, "type": kind}]
        context: Any = None
    else:
        candidates = data.get("batch")  # type: ignore[assignment]
        if not isinstance(candidates, list):
            raise Refused("400 Bad Request", "a batch request holds a 'batch' list", "bad_json")
        context = data.get("context")
    parsed, budget = Parsed(), _budget(body)
    for index, message in enumerate(candidates):
        budget = _keep(parsed, index, message, _encode(message, context), budget)
    return parsed


def _not_json(text: str) -> str:
    """Why a body ``json.loads`` refused is refused whole: not JSON, or JSON Python cannot read."""
    try:
        json.loads(text, parse_int=lambda digits: 0)
    except (ValueError, RecursionError) as exc:
        if not isinstance(exc, RecursionError):
            return "the body is not JSON"
    return "the body holds a number of over 4300 digits or nests too deeply for Python"


def _as_received(batch: Batch, budget: int) -> Parsed:
    """A batch's messages, each stored as the text it arrived as when that text is what
    :func:`_encode` would accept unchanged in meaning; any other goes through :func:`_encode`."""
    context = batch.context
    merges = isinstance(context, dict) and bool(context)
    parsed = Parsed()
    accepted = parsed.accepted
    for index, (message, text) in enumerate(batch.messages):
        if isinstance(message, dict):
            given = message.get("messageId")
            # A merged context or an id to give changes the message: it is encoded anew.
            if (
                isinstance(given, str)
                and given
                and not (merges and isinstance(message.get("context", None), (dict, NoneType)))
                and not (batch.surrogates and lone_surrogate(text))
            ):
                size = utf8_size(text)
                if size <= MAX_MESSAGE_BYTES:  # else _encode measures the compact form
                    budget -= size
                    if budget < 0:
                        raise _amplified()
                    accepted.append(Encoded(given, text))
                    continue
        elif isinstance(message, Unreadable):  # only from the lenient reading (rare)
            parsed.refused.append({"index": index, "messageId": message.message_id,
                                   "reason": "bad_message", "message": message.why})  # fmt: skip
            continue
        budget = _keep(parsed, index, message, _encode(message, context), budget)
    return parsed


def _budget(body: bytes) -> int:
    """Bytes a request of ``body`` may store (see :data:`STORED_PER_BODY_BYTE`)."""
    return max(MIN_STORED_BYTES, STORED_PER_BODY_BYTE * len(body))


def _keep(
    parsed: Parsed,
    index: int,
    message: Any,
    outcome: tuple[tuple[str, str], Encoded | None],
    budget: int,
) -> int:
    """Add one message's outcome to ``parsed``; returns the budget left (413 when spent)."""
    problem, encoded = outcome
    if encoded is not None:
        text = encoded.body  # the bytes the queue really stores
        budget -= utf8_size(text)
        if budget < 0:
            raise _amplified()
        parsed.accepted.append(encoded)
        return budget
    given = message.get("messageId") if isinstance(message, dict) else None
    named = given if isinstance(given, str) else None
    reason, sentence = problem
    parsed.refused.append(
        {"index": index, "messageId": named, "reason": reason, "message": sentence}
    )
    return budget


def _encode(message: Any, context: Any) -> tuple[tuple[str, str], Encoded | None]:
    """``message`` ready to store, or why it is refused (``(reason, sentence)``)."""
    if not isinstance(message, dict):
        return ("bad_message", "the message is not a JSON object"), None
    own = message.get("context")
    if isinstance(context, dict) and context and (own is None or isinstance(own, dict)):
        # batch-level context, as analytics.js sends it; the message's own wins
        message = {**message, "context": {**context, **(own or {})}}
    # Every result names its message, and the queue dedupes by it: give one without an
    # id (or with a non-string one) a string id.
    given = message.get("messageId")
    if isinstance(given, bool) or not isinstance(given, (str, int)) or given == "":
        message = {**message, "messageId": f"serve-{uuid.uuid4()}"}
    elif not isinstance(given, str):
        # A number is another id than the string of its digits (7 is not "7"); a resend of
        # the same number still finds it. "serve-" ids are the server's own.
        message = {**message, "messageId": f"{NUMBER_ID_PREFIX}{given}"}
    try:
        text = _ENCODER.encode(message)
        # Only text that is not ASCII is encoded to count its bytes, which also finds a lone
        # surrogate: SQLite could not store it either.
        size = utf8_size(text)
    except UnicodeEncodeError:
        # "\ud800" is valid JSON but no UTF-8: SQLite (and Sailthru) cannot hold it.
        return ("encoding", "the message holds a lone UTF-16 surrogate (\\ud800-\\udfff)"), None
    except RecursionError:
        return ("bad_message", "the message is nested too deeply"), None
    if size > MAX_MESSAGE_BYTES:
        limit = f"a message is limited to {MAX_MESSAGE_BYTES}"
        return ("too_large", f"the message is {size} bytes: {limit}"), None
    return ("", ""), Encoded(str(message["messageId"]), text)
