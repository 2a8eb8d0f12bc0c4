"""The old path of :mod:`sailthru_destination.transport.api`: existing imports keep working.

New code imports from ``sailthru_destination.transport.api``;
the names are documented on its page.
``X as X`` re-exports them (mypy --strict sees them as exported).
"""

from __future__ import annotations

from ..transport.api import DEFAULT_NON_IDEMPOTENT as DEFAULT_NON_IDEMPOTENT
from ..transport.api import PAGEVIEW_ENDPOINT as PAGEVIEW_ENDPOINT
from ..transport.api import Download as Download
from ..transport.api import FileData as FileData
from ..transport.api import RetryPolicy as RetryPolicy
from ..transport.api import SailthruApi as SailthruApi

__all__ = [
    "DEFAULT_NON_IDEMPOTENT",
    "PAGEVIEW_ENDPOINT",
    "Download",
    "FileData",
    "RetryPolicy",
    "SailthruApi",
]
