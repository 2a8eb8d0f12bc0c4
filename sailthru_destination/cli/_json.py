"""``--json``: one document on stdout a scheduler can act on without reading any other line.

A run's document is its ``summary.json`` with what a scheduler needs beside it: the report
folder, every outcome count (zeros included, so a missing key never means "none"), the exit
code and what it means. A configuration error is a document too (``status`` ``error``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ._signals import EXIT_INTERRUPTED, EXIT_TERMINATED

__all__ = ["EXIT_MEANINGS", "OUTCOMES", "error_document", "for_schedulers"]

OUTCOMES = ("created", "updated", "sent", "unchanged", "deleted", "cleared", "kept", "skipped",
            "failed")
"""Every outcome a run counts."""

EXIT_MEANINGS = {
    EXIT_OK: "every record was done",
    EXIT_FAILED: "some records failed, or the run stopped itself (see errors.jsonl)",
    EXIT_USAGE: "a usage, configuration or source error: nothing was sent",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): the next run resumes where this one stopped",
    EXIT_TERMINATED: "interrupted (SIGTERM): the next run resumes where this one stopped",
}


def for_schedulers(summary: dict[str, Any], report: Path, code: int) -> dict[str, Any]:
    """``summary`` (a run's or a plan's) with the report folder, every count and the exit."""
    counts = summary.get("counts") or {}
    return {
        **summary,
        "report": str(report),
        "counts": {name: int(counts.get(name, 0)) for name in (*OUTCOMES, *sorted(counts))},
        "exit_code": code,
        "exit_meaning": EXIT_MEANINGS.get(code, ""),
    }


def error_document(command: str, message: str, code: int = EXIT_USAGE) -> dict[str, Any]:
    """The document of a run that could not start."""
    return {"command": command, "status": "error", "error": message, "exit_code": code,
            "exit_meaning": EXIT_MEANINGS.get(code, "")}
