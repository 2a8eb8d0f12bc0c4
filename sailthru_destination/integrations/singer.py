"""Sailthru as a Singer target on singer-sdk: the ``target-sailthru`` command.

It reads SCHEMA, RECORD and STATE messages on stdin, as Meltano and any Singer tap send them
(the target itself is :mod:`._singer_target`). This module imports singer-sdk only when the
target is used, so that ``target-sailthru`` installed without the ``singer`` extra says which
extra to install (exit 2) instead of printing a traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._singer_target import CredentialsRefused, SailthruSink, TargetSailthru

__all__ = ["CredentialsRefused", "SailthruSink", "TargetSailthru", "main"]

MISSING_EXTRA = ("target-sailthru needs singer-sdk, which the 'singer' extra installs: "
                 "pip install 'sailthru-destination[singer]'")


def __getattr__(name: str) -> Any:
    if name in ("CredentialsRefused", "SailthruSink", "TargetSailthru"):
        try:
            from . import _singer_target
        except ImportError as exc:
            raise ImportError(MISSING_EXTRA) from exc
        return getattr(_singer_target, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """The ``target-sailthru`` command."""
    try:
        from ._singer_target import TargetSailthru
    except ImportError as exc:
        sys.stderr.write(f"{MISSING_EXTRA} ({exc})\n")
        raise SystemExit(2) from None
    from ..sync.config import ConfigError

    try:
        TargetSailthru.cli()
    except ConfigError as exc:  # a setting is wrong: say which, exit 2, no traceback
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2) from None
