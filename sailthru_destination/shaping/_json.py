"""JSON from outside, parsed with a bound on its nesting.

``json.loads`` recurses once per level: a 5,000-deep ``[[[[...`` raises ``RecursionError``,
which no caller expects and which escapes every ``except ValueError``. :func:`loads_bounded`
measures the nesting first (one linear pass, skipped when the text holds too few brackets to
be deep) and refuses it with a :class:`json.JSONDecodeError`, so callers that already handle
bad JSON handle deep JSON the same way.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JsonTooDeep", "loads_bounded", "too_deep_at"]

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects read from outside (vars flatten to 10 anyway)."""


class JsonTooDeep(json.JSONDecodeError):
    """JSON nested deeper than the bound: invalid JSON, as far as callers are concerned."""


def too_deep_at(text: str, max_depth: int = MAX_JSON_DEPTH) -> int | None:
    """The index where ``text`` first nests deeper than ``max_depth``, or None."""
    if text.count("[") + text.count("{") <= max_depth:
        return None
    depth = 0
    in_string = False
    escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return index
        elif char in "]}":
            depth -= 1
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_bounded(text: str, max_depth: int = MAX_JSON_DEPTH, *, strict: bool = False) -> Any:
    """``json.loads(text)``, refusing nesting deeper than ``max_depth`` as invalid JSON.

    ``strict`` also refuses ``NaN`` and ``Infinity`` (not JSON, though Python writes them).
    Raises :class:`json.JSONDecodeError` for both (:class:`JsonTooDeep` for the nesting).
    """
    at = too_deep_at(text, max_depth)
    if at is not None:
        raise JsonTooDeep(f"nested deeper than {max_depth} levels", text, at)
    if not strict:
        return json.loads(text)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), text, 0) from None
