"""SIGTERM handled like Ctrl-C while a command works, so a scheduler's stop leaves a summary."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["sigterm_as_interrupt"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` (as SIGINT does): the run
    writes its summary with ``status: "interrupted"`` and the state is closed cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler (e.g. the CLI called from a test)
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
