"""The request pipeline: faults, authentication, rate limits, routing to an endpoint.

The HTTP server hands each request here and writes back whatever reply comes out, in one piece.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..transport._protocol import ErrorCode, signature_matches
from ._endpoints._commerce import get_purchase, post_event, post_purchase, post_return
from ._endpoints._jobs import EXPORT_PREFIX, download_export, get_job, post_job, run_due_jobs
from ._endpoints._lists import delete_list, get_list, post_list
from ._endpoints._sends import get_blast, get_send, post_blast, post_send
from ._endpoints._tracking import PAGEVIEW_ENDPOINT, pageview
from ._endpoints._users import delete_user, get_user, post_user
from ._errors import ApiError, error_body
from ._forms import Form, parse_form
from ._ratelimit import RateLimiter
from ._state import State
from ._wire import Reply, Request

__all__ = ["ROUTES", "App"]

logger = logging.getLogger(__name__)

# What a load balancer answers when the service behind it is too slow (not Sailthru's JSON).
_GATEWAY_TIMEOUT = b"<html><body><h1>504 Gateway Time-out</h1></body></html>"

Handler = Callable[[State, Mapping[str, Any], Form], tuple[int, dict[str, Any]]]


def _plain(handler: Callable[[State, Mapping[str, Any]], tuple[int, dict[str, Any]]]) -> Handler:
    return lambda state, payload, _form: handler(state, payload)


# (METHOD, endpoint) -> handler; other modules add theirs (events, commerce, jobs).
ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "user"): _plain(get_user),
    ("POST", "user"): _plain(post_user),
    ("DELETE", "user"): _plain(delete_user),
    ("GET", "list"): _plain(get_list),
    ("POST", "list"): _plain(post_list),
    ("DELETE", "list"): _plain(delete_list),
    ("POST", "event"): _plain(post_event),
    ("POST", "purchase"): _plain(post_purchase),
    ("GET", "purchase"): _plain(get_purchase),
    ("POST", "return"): _plain(post_return),
    ("POST", "job"): post_job,
    ("GET", "job"): _plain(get_job),
    ("POST", "send"): _plain(post_send),
    ("GET", "send"): _plain(get_send),
    ("POST", "blast"): _plain(post_blast),
    ("GET", "blast"): _plain(get_blast),
}


class App:
    """Turns requests into replies the way api.sailthru.com would."""

    def __init__(self, state: State, limiter: RateLimiter) -> None:
        self.state = state
        self.limiter = limiter

    def handle(self, request: Request) -> Reply | None:
        """The reply to ``request``, or None to drop the connection without one."""
        state = self.state
        if state.latency > 0:
            time.sleep(state.latency)
        run_due_jobs(state)
        if state.chance(state.faults.connection_error_rate):
            return None
        endpoint = request.path.strip("/")
        if endpoint.startswith(EXPORT_PREFIX):
            return download_export(state, request)
        if endpoint == PAGEVIEW_ENDPOINT:
            reply = pageview(state, self.limiter, self.record_call, request)
        else:
            reply = self._api_call(request, endpoint)
        if request.method == "POST" and state.chance(state.faults.drop_after_apply_rate):
            return None  # applied (a job created still runs), but the reply is lost
        if request.method == "POST" and state.chance(state.faults.error_after_apply_rate):
            # Applied, but the gateway gave up waiting: what the caller sees proves nothing.
            return Reply(504, _GATEWAY_TIMEOUT, reply.headers, content_type="text/html")
        return reply

    def _api_call(self, request: Request, endpoint: str) -> Reply:
        method = request.method
        form = parse_form(request.query, request.headers.get("Content-Type", ""), request.body)
        refusal = self._authenticate(form.fields)
        if refusal is not None:
            return Reply.json(refusal.status, refusal.body(), self.limiter.peek(method, endpoint))
        self.record_call(method, endpoint)
        burst = self.state.faults.rate_limit_burst
        allowed, headers = self.limiter.take(
            method, endpoint, (lambda: self.state.chance(burst)) if burst > 0 else None
        )
        if not allowed:
            message = f"Too many {method} requests this minute to /{endpoint} API"
            return Reply.json(429, error_body(ErrorCode.TOO_MANY_REQUESTS, message), headers)
        try:
            status, body = self._route(method, endpoint, form)
        except ApiError as error:
            status, body = error.status, error.body()
        return Reply.json(status, body, headers)

    def record_call(self, method: str, endpoint: str) -> None:
        """Count a request that reached an endpoint (for ``fake.calls`` / ``call_times``)."""
        with self.state.lock:
            self.state.calls[(method, endpoint)] += 1
            self.state.call_times.append((time.monotonic(), method, endpoint))

    def _authenticate(self, fields: Mapping[str, str]) -> ApiError | None:
        state = self.state
        if fields.get("api_key") != state.api_key:
            return ApiError(401, ErrorCode.INVALID_API_KEY, "Invalid API key")
        if not signature_matches(fields, state.api_secret):
            return ApiError(401, ErrorCode.AUTHENTICATION_FAILED, "Authentication failed")
        return None

    def _route(self, method: str, endpoint: str, form: Form) -> tuple[int, dict[str, Any]]:
        state = self.state
        if state.chance(state.faults.server_error_rate):
            raise ApiError(500, ErrorCode.INTERNAL_ERROR, "Internal error")
        if state.chance(state.faults.error_with_200_rate):
            # (inferred) which error comes with a 200; connectors report the shape only.
            raise ApiError(200, ErrorCode.INTERNAL_ERROR, "Internal error")
        if endpoint in state.forbidden_endpoints:
            raise ApiError(403, ErrorCode.OTHER, f"API key not permitted to use the {endpoint} API")
        handler = ROUTES.get((method, endpoint))
        if handler is None:
            if any(name == endpoint for _, name in ROUTES):
                raise ApiError(405, ErrorCode.UNSUPPORTED_METHOD, f"Unsupported method: {method}")
            raise ApiError(404, ErrorCode.UNSUPPORTED_METHOD, f"Unknown API: /{endpoint}")
        payload = _payload(form.fields.get("json"))
        return handler(state, payload, form)


def _payload(raw: str | None) -> Mapping[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, ErrorCode.INVALID_PARAMETER, "Invalid JSON in parameter: json") from exc
    if not isinstance(data, dict):
        raise ApiError(400, ErrorCode.INVALID_PARAMETER, "Parameter json must be an object")
    return data
