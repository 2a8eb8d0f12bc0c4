"""The old path of :mod:`sailthru_destination.transport.calllog`: existing imports keep working.

New code imports from ``sailthru_destination.transport.calllog``;
the names are documented on its page.
``X as X`` re-exports them (mypy --strict sees them as exported).
"""

from __future__ import annotations

from ..transport.calllog import CallLog as CallLog
from ..transport.calllog import CallRecord as CallRecord
from ..transport.calllog import JsonLinesSink as JsonLinesSink
from ..transport.calllog import mask_key as mask_key

__all__ = [
    "CallLog",
    "CallRecord",
    "JsonLinesSink",
    "mask_key",
]
