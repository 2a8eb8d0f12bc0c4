"""Which Segment message goes to which action: one table, like Segment's presets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..results import ExportResult
from ._commerce import order_completed, order_refunded, product_added, product_removed
from ._identify import alias, identify
from ._message import _Message
from ._track import custom_event, page, subscribed

if TYPE_CHECKING:
    from ._adapter import SegmentAdapter

__all__ = ["PRESETS", "route"]

Handler = Callable[["SegmentAdapter", _Message], ExportResult]

PRESETS: Mapping[tuple[str, str | None], Handler] = {
    ("identify", None): identify,
    ("track", "Order Completed"): order_completed,
    ("track", "Product Added"): product_added,
    ("track", "Product Removed"): product_removed,
    ("track", "Order Refunded"): order_refunded,
    ("track", "Subscribed"): subscribed,
    ("track", None): custom_event,
    ("page", None): page,
    ("alias", None): alias,
}
"""Which messages go to which action: ``(type, event)``; event ``None`` is any other event."""

_SUPPORTED_TYPES = sorted({kind for kind, _ in PRESETS})


def route(msg: _Message) -> Handler | str:
    """The handler for a message, or why it is skipped."""
    if msg.sailthru_disabled:
        return "integrations turn Sailthru off for this message"
    kind = msg.type
    if kind not in _SUPPORTED_TYPES:
        return f"Sailthru takes no {kind!r} messages (it takes {', '.join(_SUPPORTED_TYPES)})"
    if kind == "track":
        return PRESETS.get((kind, msg.event)) or PRESETS[(kind, None)]
    return PRESETS[(kind, None)]
