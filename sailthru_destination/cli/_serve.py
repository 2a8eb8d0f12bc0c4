"""``sailthru-destination serve``: the Segment-compatible ingest endpoint (``serve`` extra)."""

from __future__ import annotations

from typing import Any

from ..serve import register
from ._common import out
from ._credentials import add_credentials, app_options, require_authentication

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``serve`` and its flags to the subcommands."""
    register(sub, credentials=add_credentials, app=app_options, out=out,
             authenticate=require_authentication)
