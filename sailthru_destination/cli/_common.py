"""What every subcommand shares: exit codes, the usage error, printing, ``--rate-limit``."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from ..transport._protocol import check_rate_limits

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "UsageError", "out", "rate_limits",
           "reader_gone"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Something the user must fix on the command line or in the environment (exit 2)."""


def out(text: str = "", stream: TextIO | None = None) -> None:
    """Print one line of the command's output (stdout unless ``stream`` says otherwise).

    A reader that went away (``sync ... | head -3``) is no error of the run: the rest of the
    output is dropped and the command ends with its own status.
    """
    target = stream or sys.stdout
    try:
        target.write(text + "\n")
        if target is sys.stdout:
            target.flush()
    except BrokenPipeError:
        reader_gone(target)


def reader_gone(stream: TextIO) -> None:
    """Send what is still written to ``stream`` (whose reader closed it) to nowhere, so
    neither a later line nor the flush at exit raises."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file: nothing to redirect
        pass


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
        if not name.strip() or not limits[name.strip()] > 0:
            raise UsageError(f"--rate-limit wants ENDPOINT=N with N > 0, got {item!r}")
    try:
        return check_rate_limits(limits)
    except ValueError as error:
        raise UsageError(f"--rate-limit: {error}") from None
