"""The page-view tracking endpoint (api.sail-track.com in production), on the same server.

Not signed like the API: ``Authorization: Bearer <customer id>`` and a JSON body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...transport._protocol import PAGEVIEW_ENDPOINT, ErrorCode
from .._errors import error_body
from .._ratelimit import RateLimiter
from .._state import State, rfc2822_now
from .._wire import Reply, Request

__all__ = ["PAGEVIEW_ENDPOINT", "pageview"]

_REQUIRED = ("userIdKey", "userIdValue", "url")


def pageview(
    state: State,
    limiter: RateLimiter,
    record_call: Callable[[str, str], None],
    request: Request,
) -> Reply:
    """POST /v1/track/event/pageview: record the page view of one user."""
    method = request.method
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        headers = limiter.peek(method, PAGEVIEW_ENDPOINT)
        body = error_body(ErrorCode.INVALID_API_KEY, "Missing customer id")
        return Reply.json(401, body, headers)
    record_call(method, PAGEVIEW_ENDPOINT)
    allowed, headers = limiter.take(method, PAGEVIEW_ENDPOINT)
    if not allowed:
        message = f"Too many {method} requests this minute to /{PAGEVIEW_ENDPOINT} API"
        return Reply.json(429, error_body(ErrorCode.TOO_MANY_REQUESTS, message), headers)
    if method != "POST":
        message = f"Unsupported method: {method}"
        return Reply.json(405, error_body(ErrorCode.UNSUPPORTED_METHOD, message), headers)
    try:
        data: Any = json.loads(request.body or b"null")
    except ValueError:
        data = None
    if not isinstance(data, dict) or any(data.get(name) in (None, "") for name in _REQUIRED):
        # (inferred) the tracking service's exact refusal text.
        message = "Missing required field: " + ", ".join(_REQUIRED)
        return Reply.json(400, error_body(ErrorCode.INVALID_PARAMETER, message), headers)
    with state.lock:
        state.pageviews.append(
            {
                "customer_id": auth[7:].strip(),
                "userIdKey": data["userIdKey"],
                "userIdValue": data["userIdValue"],
                "url": data["url"],
                "tags": list(data.get("tags") or []),
                "useStoredTags": data.get("useStoredTags"),
                "time": rfc2822_now(),
            }
        )
    return Reply.json(200, {"ok": True}, headers)
