"""A ``/v1/batch`` body split into its messages, each with the exact text it arrived as.

Storing a message as the sender wrote it spares the intake a JSON encode per message (about
10 µs each, half its CPU per request before this). This reader is only the fast road for the
common request: a UTF-8 JSON object whose ``batch`` is an array. It decodes with the standard
library's own scanner (what ``json.loads`` uses, so it accepts exactly what ``json.loads``
accepts); for anything else (a body that is not UTF-8, not JSON, not an object, without a
``batch`` array, with extra data, or nested past the recursion limit) it answers ``None`` and
the caller takes the general road, which refuses or re-encodes exactly as before.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

__all__ = ["Batch", "Unreadable", "lone_surrogate", "read_batch"]

_DECODER = json.JSONDecoder()
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]  # set in __init__, not typed
_SPACE = re.compile(r"[ \t\n\r]*")
_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")
"""A surrogate escape, maybe preceded by an escaped backslash: worth a closer look."""
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)")


class Unreadable(NamedTuple):
    """A ``batch`` element that is valid JSON Python cannot decode (an integer of more than
    4300 digits, nesting past the recursion limit): refused by itself, the others kept."""

    message_id: str | None
    why: str


_MESSAGE_ID = re.compile(r'"messageId"\s*:\s*("(?:[^"\\]|\\.)*")')


class Batch(NamedTuple):
    """A batch body's messages as received, and its batch-level ``context`` (or None)."""

    messages: list[tuple[Any, str]]
    """Each element of the ``batch`` array: its decoded value and its text as received."""
    context: Any
    surrogates: bool
    """Whether the body may spell a UTF-16 surrogate anywhere (then see :func:`lone_surrogate`)."""


def lone_surrogate(text: str) -> bool:
    """Whether JSON ``text`` (UTF-8 clean) spells a UTF-16 surrogate that is not half of a pair
    (``"\\ud800"``: valid JSON, but no UTF-8, so neither SQLite nor Sailthru can hold it).

    Every backslash in JSON text begins an escape, so reading escapes from the left finds each
    one whole (an escaped backslash before ``ud800`` is not taken for a surrogate); a pair is a
    high surrogate escape directly followed by a low one, as the decoder joins them.
    """
    high_ends = -1  # where the last unpaired high surrogate escape ended
    for escape in _ESCAPE.finditer(text):
        hexa = escape.group(1)
        code = int(hexa, 16) if hexa else 0
        if high_ends >= 0:
            if 0xDC00 <= code <= 0xDFFF and escape.start() == high_ends:
                high_ends = -1
                continue
            return True
        if 0xD800 <= code <= 0xDBFF:
            high_ends = escape.end()
        elif 0xDC00 <= code <= 0xDFFF:
            return True
    return high_ends >= 0


def read_batch(body: bytes, *, lenient: bool = False) -> Batch | None:
    """``body``'s messages with their texts, or None if it needs the general reader.

    ``lenient``: an element Python cannot decode is an :class:`Unreadable` (the general
    reader asks so once ``json.loads`` failed on the whole body).
    """
    try:
        text = body.decode("utf-8")  # json.loads would let UTF-8 surrogates through
        return _object(text, lenient)
    except (ValueError, IndexError, StopIteration, RecursionError):
        # ValueError covers UnicodeDecodeError and JSONDecodeError; IndexError a body cut
        # short; StopIteration the scanner finding no value where one must be.
        return None


def _object(text: str, lenient: bool = False) -> Batch | None:
    at = _SPACE.match(text).end()  # type: ignore[union-attr]  # matches "" at worst
    if text[at] != "{":
        return None
    at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
    messages: list[tuple[Any, str]] | None = None
    context: Any = None
    if text[at] == "}":
        return None  # no batch: the general road says so
    while True:
        if text[at] != '"':
            return None
        key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
        if text[at] != ":":
            return None
        at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
        if key == "batch":  # a key given twice: the last one counts, as in json.loads
            messages, at = _array(text, at, lenient)
            if messages is None:
                return None
        else:
            value, at = _SCAN(text, at)
            if key == "context":
                context = value
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
        if text[at] == ",":
            at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
            continue
        if text[at] != "}":
            return None
        break
    if _SPACE.match(text, at + 1).end() != len(text):  # type: ignore[union-attr]
        return None  # extra data after the object: json.loads refuses it
    if messages is None:
        return None
    return Batch(messages, context, _SURROGATE.search(text) is not None)


def _array(text: str, at: int, lenient: bool) -> tuple[list[tuple[Any, str]] | None, int]:
    if text[at] != "[":
        return None, at
    at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
    found: list[tuple[Any, str]] = []
    if text[at] == "]":
        return found, at + 1
    scan, space = _SCAN, _SPACE.match
    while True:
        if lenient:
            value, end = _lenient(text, at)
        else:
            value, end = scan(text, at)
        found.append((value, text[at:end]))
        after = text[end]
        if after == ",":  # compact JSON: no space to skip
            at = end + 1
            if text[at] in _BLANKS:
                at = space(text, at).end()  # type: ignore[union-attr]
            continue
        if after in _BLANKS:
            at = space(text, end).end()  # type: ignore[union-attr]
            after = text[at]
            if after == ",":
                at = space(text, at + 1).end()  # type: ignore[union-attr]
                continue
        else:
            at = end
        if after != "]":
            return None, at
        return found, at + 1


_BLANKS = frozenset(" \t\n\r")


def _lenient(text: str, at: int) -> tuple[Any, int]:
    """The value at ``at`` and its end, or an :class:`Unreadable` for a valid value Python
    cannot decode (a ValueError for what is not JSON at all still ends the reading)."""
    try:
        value, end = _SCAN(text, at)
        return value, int(end)
    except (ValueError, RecursionError) as exc:
        end = _skip(text, at)
        named = _MESSAGE_ID.search(text, at, end)
        message_id = json.loads(named.group(1)) if named else None
        why = (
            "the message nests too deeply"
            if isinstance(exc, RecursionError)
            else "the message holds a number Python cannot read (over 4300 digits)"
        )
        return Unreadable(message_id, why), end


def _skip(text: str, at: int) -> int:
    """The end of the object or array at ``at``, found by counting brackets outside strings
    (the decoder has failed on it; a broken value raises ValueError)."""
    if text[at] not in "{[":
        raise ValueError("not a message")
    depth = 0
    index = at
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            index = json.decoder.scanstring(text, index + 1)[1]  # type: ignore[attr-defined]
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise ValueError("cut short")
