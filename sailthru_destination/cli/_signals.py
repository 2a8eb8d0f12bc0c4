"""SIGTERM handled like Ctrl-C while a command works, so a scheduler's stop leaves a summary."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "Terminated", "exit_code", "sigterm_as_interrupt"]

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: SIGTERM (a scheduler's stop)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: the run stops, flushes and reports the same way."""

    signum = signal.SIGTERM


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def exit_code(interrupt: BaseException) -> int:
    """The exit code of a run stopped by ``interrupt``: 143 for SIGTERM, else 130."""
    signum = getattr(interrupt, "signum", None)
    if signum is None and isinstance(interrupt.__cause__, Terminated):
        signum = signal.SIGTERM
    return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt, as SIGINT
    raises): the run writes its summary with ``status: "interrupted"`` and the state is
    closed cleanly; the process then exits 143 (130 for Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler (e.g. the CLI called from a test)
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
