"""SIGTERM handled like Ctrl-C while a command works, so a scheduler's stop leaves a summary."""

from __future__ import annotations

import signal
import sys
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


class _StopOnce:
    """The handler of SIGINT and SIGTERM for one command: the first signal stops the run; a
    second one while it shuts down is ignored (said on stderr), so the calls in flight are
    still recorded and the summary still counts them."""

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            print("already stopping: waiting for the calls in flight to be recorded",
                  file=sys.stderr, flush=True)
            return
        self.stopping = True
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


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
    closed cleanly; the process then exits 143 (130 for Ctrl-C). A second signal while the
    run shuts down is ignored, so no call in flight goes unrecorded."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler (e.g. the CLI called from a test)
        return
    handler = _StopOnce()
    previous = signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
