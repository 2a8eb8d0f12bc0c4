"""The live debugger: one redacted record per attempt of every Sailthru call.

A :class:`CallLog` keeps the latest records in memory (bounded) and can stream each one to a
sink, e.g. :class:`JsonLinesSink` for a JSON-lines file. A record holds the decoded payload, the
reply's status and Sailthru error, the duration and the attempt number; the API key is masked (see
:func:`mask_key`), and the signature and secret are never part of a record.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["CallLog", "CallRecord", "JsonLinesSink", "mask_key"]

_log = logging.getLogger(__name__)


_SHOW_LAST = 4
_SHOWN_FROM = 12  # a key shorter than this shows nothing: four of eight characters is half


def mask_key(api_key: str) -> str:
    """``api_key`` hidden behind a fixed ``****`` (its length never shows), with its last four
    characters only when it is long enough that they give nothing away (12 characters or
    more; Sailthru's keys have 32). An already masked key is returned as it is."""
    if api_key.startswith("****") and len(api_key) <= 4 + _SHOW_LAST:
        return api_key
    if len(api_key) < _SHOWN_FROM:
        return "****"
    return "****" + api_key[-_SHOW_LAST:]


@dataclass(frozen=True)
class CallRecord:
    """One attempt of one call, as sent and as answered.

    ``time`` is the Unix time the attempt started; ``status`` is None when no reply arrived;
    ``code`` and ``message`` are Sailthru's error (or the transport failure), None on success.
    ``error`` names the raised error class, if any.
    """

    time: float
    method: str
    endpoint: str
    api_key: str
    payload: dict[str, Any] = field(repr=False)
    attempt: int
    duration: float
    status: int | None = None
    code: int | None = None
    message: str | None = None
    error: str | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data (the payload is shared, not copied: records are
        written once and never changed, and a deep copy cost more than signing the call)."""
        return {name: getattr(self, name) for name in _FIELD_NAMES}


_FIELD_NAMES = tuple(f.name for f in fields(CallRecord))


class CallLog:
    """The latest ``max_records`` call records, plus an optional sink that sees every record.

    Thread-safe. A sink that raises is logged and otherwise ignored: the debugger must not break
    the calls it watches.
    """

    def __init__(
        self,
        max_records: int = 1000,
        *,
        sink: Callable[[CallRecord], object] | None = None,
    ) -> None:
        if max_records < 0:
            raise ValueError(f"max_records must be >= 0, got {max_records!r}")
        self._records: deque[CallRecord] = deque(maxlen=max_records)
        self._lock = threading.Lock()
        self.sink = sink

    def append(self, record: CallRecord) -> None:
        """Keep ``record`` and pass it to the sink."""
        with self._lock:
            self._records.append(record)
        if self.sink is not None:
            try:
                self.sink(record)
            except Exception:
                _log.exception("call log sink failed; the record is kept in memory only")

    def records(self) -> list[CallRecord]:
        """A snapshot of the kept records, oldest first."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget the kept records."""
        with self._lock:
            self._records.clear()

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self.records())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __repr__(self) -> str:
        return f"CallLog({len(self)}/{self._records.maxlen} records)"


class JsonLinesSink:
    """A call-log sink that appends each record as one JSON line to ``path``.

    Thread-safe; the file is opened on first use and closed by :meth:`close`. Lines are
    buffered and reach the file at least every ``flush_every`` seconds (and on :meth:`flush`
    and :meth:`close`): flushing per record cost more CPU than the call it logged, and a
    process killed outright loses at most that last second of debugger lines, never a record's
    outcome (those live in the run's state and ``errors.jsonl``).
    """

    def __init__(self, path: str | os.PathLike[str], *, flush_every: float = 1.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file: Any = None
        self._flush_every = flush_every
        self._flushed = time.monotonic()

    def __call__(self, record: CallRecord) -> None:
        line = json.dumps(record.to_dict(), default=str, ensure_ascii=False)
        with self._lock:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._file.write(line + "\n")
            now = time.monotonic()
            if now - self._flushed >= self._flush_every:
                self._file.flush()
                self._flushed = now

    def flush(self) -> None:
        """Push the buffered lines to the file now."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
                self._flushed = time.monotonic()

    def close(self) -> None:
        """Close the file (a later record reopens it)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> JsonLinesSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JsonLinesSink({self.path!r})"
