"""What every subcommand shares: exit codes, the usage error, printing, ``--rate-limit``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "UsageError", "out", "rate_limits"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Something the user must fix on the command line or in the environment (exit 2)."""


def out(text: str = "", stream: TextIO | None = None) -> None:
    """Print one line of the command's output (stdout unless ``stream`` says otherwise)."""
    (stream or sys.stdout).write(text + "\n")


def rate_limits(values: Sequence[str] | None) -> dict[str, float]:
    """``--rate-limit ENDPOINT=N`` values as a mapping; a bad one is a :class:`UsageError`."""
    limits: dict[str, float] = {}
    for item in values or ():
        name, _, number = item.partition("=")
        try:
            limits[name.strip()] = float(number)
        except ValueError:
            raise UsageError(
                f"--rate-limit wants ENDPOINT=N (e.g. user=300), got {item!r}"
            ) from None
        if not name.strip() or limits[name.strip()] <= 0:
            raise UsageError(f"--rate-limit wants ENDPOINT=N with N > 0, got {item!r}")
    return limits
