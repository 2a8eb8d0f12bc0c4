"""One sync of a model at a time: a file lock beside its state file, naming its holder.

Two runs of one model at once would each send what the other is sending: users twice,
and orders the other run has claimed reported "pending, check Sailthru". The lock
(``filelock``, released by the OS when its process dies, so a killed run never leaves it
stuck) is ``<state>.lock``; while it is held, the holder's process id is in
``<state>.lock.pid``, so the run that cannot get the lock can say who holds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from ..._private import private_dir
from .state import StateError

__all__ = ["RunLock", "RunLocked"]


class RunLocked(StateError):
    """Another process is running a sync of the same model (same state file)."""

    def __init__(self, model: str, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"another sync of {model} is running ({holder}); try again when it "
                         "has finished")
        self.model = model
        self.pid = pid


class RunLock:
    """Held for one run of a model; waits up to ``wait`` seconds for another run to end.

    Raises :class:`RunLocked` (a :class:`~sailthru_destination.sync.memory.state.StateError`, so
    the command line exits 2) when the other run is still going after ``wait`` seconds.
    """

    def __init__(self, state_file: str | Path, model: str, *, wait: float = 2.0) -> None:
        path = Path(state_file)
        self.model = model
        self.wait = wait
        self._pid_file = path.with_name(path.name + ".lock.pid")
        # Process-wide, not per thread: one run of a model per process at a time too.
        self._lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=wait,
                              thread_local=False)

    def __repr__(self) -> str:
        return f"RunLock({self.model!r})"

    def holder(self) -> int | None:
        """The process id of the run holding the lock (as it wrote it), or None."""
        try:
            return int(self._pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunLocked` (another run holds it) or
        :class:`~sailthru_destination.sync.memory.state.StateError` (the folder cannot be used)."""
        try:
            private_dir(self._pid_file.parent)  # the state folder: customer data
            self._lock.acquire()
        except Timeout:
            raise RunLocked(self.model, self.holder()) from None
        except OSError as exc:
            raise StateError(f"cannot take the run lock of {self.model} in "
                             f"{self._pid_file.parent}: {exc.strerror or exc}") from None
        try:
            # Written whole then renamed, so a reader never sees half a number.
            partial = self._pid_file.with_name(f"{self._pid_file.name}.{os.getpid()}")
            partial.write_text(str(os.getpid()), encoding="ascii")
            os.replace(partial, self._pid_file)
        except OSError as exc:
            self._lock.release()
            raise StateError(f"cannot write {self._pid_file}: {exc.strerror or exc}") from None

    def release(self) -> None:
        """Let the next run of the model start."""
        # The pid goes first: once the lock is free, the next holder writes its own.
        self._pid_file.unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
