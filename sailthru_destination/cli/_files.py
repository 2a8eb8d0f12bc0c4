"""Output files a command writes whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["replace_on_success"]


@contextlib.contextmanager
def replace_on_success(path: Path) -> Iterator[TextIO]:
    """A text file to write that becomes ``path`` only if the block ends without an error.

    The text goes to a temporary file in the same folder (so the rename is atomic), which
    replaces ``path`` at the end, keeping the mode of the file it replaces. On any error the
    temporary file is removed and ``path`` is left as it was.
    """
    # Not tempfile: its files are created 0600 whatever the umask; a new export should get
    # the permissions any new file of the user gets.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(descriptor, "w", newline="", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
