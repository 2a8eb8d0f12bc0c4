"""The run report: a folder a user opens after a run to see what happened and why.

``summary.json`` holds the counts, calls and timings; ``errors.jsonl`` one line per
failed record with the reason; ``skipped.jsonl`` one line per record left alone on purpose
with the reason (such as a gone row whose user another row holds); ``calls.jsonl`` every
API call attempt as sent and as answered (the "live debugger"), with the API key masked
and no signature or secret; and ``report.html``, the page a person reads (see
:mod:`.report_html`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import IO, Any

from ..._private import private_dir, private_file
from ...transport.calllog import JsonLinesSink
from .report_html import write_report_html
from .summary import RecordFailure, RecordNotice

__all__ = ["RunReport", "default_report_dir"]

log = logging.getLogger(__name__)
# The files of a report folder, created private before anything is written to them.
_FILES = ("calls.jsonl", "errors.jsonl", "skipped.jsonl", "summary.json")


def default_report_dir(base: str | Path, name: str) -> Path:
    """``<base>/reports/<name>-<UTC date and time>``, made unique if it already exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = Path(base) / "reports" / f"{name}-{stamp}"
    candidate, number = folder, 1
    while candidate.exists():
        number += 1
        candidate = folder.with_name(f"{folder.name}-{number}")
    return candidate


class RunReport:
    """Writes one run's report folder as the run goes; :meth:`finish` writes the summary.

    With ``append``, a folder already written by an earlier part of the same run (another
    batch of a dlt load, say) is added to rather than replaced.
    """

    def __init__(self, folder: str | Path, *, append: bool = False) -> None:
        # Record ids, emails and payloads: the folder and its files are the owner's only.
        self.folder = private_dir(folder)
        for name in _FILES:
            private_file(self.folder / name)
        self.calls = JsonLinesSink(self.folder / "calls.jsonl")
        self._errors: IO[str] = (self.folder / "errors.jsonl").open(
            "a" if append else "w", encoding="utf-8")
        self._skipped: IO[str] = (self.folder / "skipped.jsonl").open(
            "a" if append else "w", encoding="utf-8")
        self._lock = threading.Lock()
        self.failures = 0

    def __repr__(self) -> str:
        return f"RunReport({str(self.folder)!r})"

    def add_failure(self, failure: RecordFailure) -> None:
        """Write one failed record to ``errors.jsonl``."""
        with self._lock:
            self.failures += 1
            self._errors.write(json.dumps(failure.to_dict(), ensure_ascii=False) + "\n")
            self._errors.flush()

    def add_notice(self, notice: RecordNotice) -> None:
        """Write one record left alone on purpose to ``skipped.jsonl``."""
        with self._lock:
            self._skipped.write(json.dumps(notice.to_dict(), ensure_ascii=False) + "\n")
            self._skipped.flush()

    def finish(self, summary: dict[str, Any], *, page: bool = True) -> Path:
        """Write ``summary.json``, close the files, write ``report.html`` (unless not
        ``page``) and return the summary's path."""
        path = self.folder / "summary.json"
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        self.close()
        _in_input_order(self.folder / "errors.jsonl")
        if not page:
            return path
        try:
            write_report_html(self.folder)
        except OSError as exc:  # the run is done and its JSON written: the page is a view
            log.warning("could not write %s: %s", self.folder / "report.html", exc)
        return path

    def close(self) -> None:
        """Close the files (also done by :meth:`finish`)."""
        with self._lock:
            for handle in (self._errors, self._skipped):
                if not handle.closed:
                    handle.close()
        self.calls.close()


_POSITION = re.compile(r"(\d+)")


def _position(line: str) -> tuple[int, int]:
    """Where a failure's record was in the model (``line 12``, ``row 40``); records with no
    place in it (rows gone from the model) come after every row."""
    try:
        where = json.loads(line).get("where")
    except ValueError:
        where = None
    found = _POSITION.search(where) if isinstance(where, str) else None
    return (0, int(found.group(1))) if found else (1, 0)


def _in_input_order(path: Path) -> None:
    """Rewrite ``errors.jsonl`` in the model's order: a run reports a row's failure when it
    finds it (a bad row while reading, a refused one while exporting), not in row order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    ordered = sorted(lines, key=_position)  # stable: records of one row keep their order
    if ordered != lines:
        temporary = path.with_suffix(".jsonl.tmp")
        temporary.write_text("".join(line + "\n" for line in ordered), encoding="utf-8")
        temporary.replace(path)
