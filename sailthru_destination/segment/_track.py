"""track (custom events and Subscribed) and page: the non-commerce Segment actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..features.events import Event
from ..results import ExportResult, Status
from ..shaping.mapping import InvalidValue, list_name
from ..shaping.varnames import describe_problems
from ..transport._protocol import RESERVED_EVENT_NAMES
from ._message import _Message, _tags, _text
from ._vars import segment_vars

if TYPE_CHECKING:
    from ._adapter import SegmentAdapter

__all__ = ["custom_event", "page", "subscribed"]

# Segment spec traits that identify a person: kept out of event vars (the user is the key).
_PERSONAL_FIELDS = frozenset(
    {"email", "phone", "address", "birthday", "firstname", "lastname", "username"}
)


def custom_event(adapter: SegmentAdapter, msg: _Message) -> ExportResult:
    """A custom event with the flattened properties, personal fields left out."""
    name = msg.event
    if name.lower() in RESERVED_EVENT_NAMES:
        detail = f"Sailthru reserves the event name {name!r} for itself: not sent"
        return ExportResult(Status.SKIPPED, msg.id, detail)
    key_type, key = msg.user_ref()
    properties = {
        k: v
        for k, v in msg.mapping("properties").items()
        if not (isinstance(k, str) and k.replace("_", "").lower() in _PERSONAL_FIELDS)
    }
    variables, problems = segment_vars(properties, "properties", adapter.timezone)
    event = Event(key, key_type, name, variables, record_id=msg.id)
    result = adapter.destination.send_events([event]).results[0]
    if not problems or not result.ok:
        return result
    detail = "; ".join(filter(None, (result.detail, describe_problems(problems, "properties"))))
    return ExportResult(result.status, result.record_id, detail, result.error)


def subscribed(adapter: SegmentAdapter, msg: _Message) -> ExportResult:
    """Join the named list and reset the opt-out to ``none``."""
    wanted = msg.mapping("properties").get("list")
    if wanted is None or wanted == "":
        raise InvalidValue("properties.list", "Subscribed names the list to join")
    name = list_name(_text(wanted, "properties.list"))
    key_type, user = msg.user_ref()
    payload: dict[str, Any] = {"id": user, "key": key_type, "optout_email": "none"}
    if key_type != "email" and msg.email:
        payload["keys"] = {"email": msg.email}
    adapter.post_user(payload, {name: 1})
    return ExportResult(Status.SENT, msg.id, f"joined list {name!r}, opt-out none")


def page(adapter: SegmentAdapter, msg: _Message) -> ExportResult:
    """A page view on Sailthru's tracking service; skipped without a customer id or a url."""
    customer_id = adapter.settings.customer_id
    if customer_id is None:
        detail = "page views need the Sailthru customer id: set customer_id in the settings"
        return ExportResult(Status.SKIPPED, msg.id, detail)
    props = msg.mapping("properties")
    url = props.get("url") or msg.page_url
    if url is None or url == "":
        # Server-side and screen-like page calls often carry only a name: nothing to track.
        detail = "no page url (properties.url or context.page.url): Sailthru tracks urls"
        return ExportResult(Status.SKIPPED, msg.id, detail)
    if not isinstance(url, str) or not url.strip():
        raise InvalidValue("properties.url", "the page url must be a non-empty string")
    key_type, user = msg.user_ref()
    payload = {
        "userIdKey": key_type,
        "userIdValue": user,
        "url": url.strip(),
        "tags": _tags(props.get("keywords"), "properties.keywords"),
    }
    adapter.destination.api.track_pageview(customer_id, payload)
    return ExportResult(Status.SENT, msg.id, f"page view of {url.strip()!r} sent")
