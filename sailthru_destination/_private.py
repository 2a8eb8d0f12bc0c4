"""Files and folders that hold customer data, created readable by their owner only.

State files, run reports and ``serve``'s queue hold emails, record ids and the values sent to
Sailthru: created world-readable (the usual umask gives 0644/0755) they are open to every
account on the machine. They are created 0600 (files) and 0700 (folders) instead. An existing
file or folder keeps the mode it has: the operator may have chosen it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "private_dir", "private_file"]

PRIVATE_FILE = 0o600
"""The mode of a file the library creates that may hold customer data."""
PRIVATE_DIR = 0o700
"""The mode of a folder the library creates for such files."""
_IN_MEMORY = ":memory:"


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and its missing parents as 0700 folders; return it as a Path."""
    folder = Path(path)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for part in reversed(missing):
        # The mode applies to each folder made here (pathlib's parents=True would not).
        part.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    return folder


def private_file(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` empty as a 0600 file if it does not exist (its folder made private);
    what is written to it next is then never readable by others, even for a moment. SQLite's
    in-memory database name, ``:memory:``, is no file and is left alone."""
    file = Path(path)
    if str(path) == _IN_MEMORY:
        return file
    private_dir(file.parent)
    os.close(os.open(file, os.O_CREAT | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE))
    return file
