"""Which credential Sailthru refused: the key (error 3), the secret (error 5) or the IP (4).

A wrong key and a wrong secret both come back as HTTP 401, but Sailthru's error code tells
them apart; saying which one is wrong saves the user from guessing (and from pasting the
secret somewhere to compare it).
"""

from __future__ import annotations

from typing import Any

from ..errors import AuthError, SailthruError, TransientError
from ._protocol import ErrorCode
from .api import SailthruApi

__all__ = ["AUTH_PROBE", "auth_failure", "check_authentication", "refused_credential"]

# A signed read of a user that cannot exist: cheap, and any answer but 401 proves the key
# and secret (a 403 too: the key is known, it just may not read users).
AUTH_PROBE: tuple[str, dict[str, Any]] = (
    "user", {"id": "0" * 24, "key": "sid", "fields": {"keys": 1}},
)
"""The cheap signed call (endpoint, payload) that proves the API key and secret before any work."""


_REFUSED: dict[int, str] = {
    ErrorCode.INVALID_API_KEY: "key",
    ErrorCode.AUTHENTICATION_FAILED: "secret",
    ErrorCode.DISALLOWED_IP: "ip",
}


def refused_credential(error: AuthError) -> str | None:
    """``"key"``, ``"secret"`` or ``"ip"``: what ``error`` says is wrong (None: unknown)."""
    return _REFUSED.get(error.code) if error.code is not None else None


def auth_failure(error: AuthError) -> str:
    """One sentence for a refused authentication, naming the credential at fault."""
    which = refused_credential(error)
    if which == "key":
        return "authentication failed: Sailthru does not know this API key: check the API key"
    if which == "secret":
        return ("authentication failed: the API secret does not match the API key (the "
                "signature was refused): check the API secret")
    if which == "ip":
        return ("authentication failed: this machine's IP address is not allowed for this "
                "API key: allow it in Sailthru's API settings")
    return "authentication failed: check the API key and secret"


def check_authentication(api: SailthruApi) -> AuthError | None:
    """Make one cheap signed call; the refusal when the credentials are wrong, else None.

    A call that got no reply at all (:class:`TransientError` without an HTTP status: the host
    accepted the connection and never answered) is raised: nothing that follows would fare
    better. Any other failure (a 403, a 5xx) is not a verdict on the credentials and is left to
    the calls that follow, with their own retries and reporting.
    """
    endpoint, params = AUTH_PROBE
    try:
        api.get(endpoint, params)
    except AuthError as exc:
        return exc
    except TransientError as exc:
        if exc.status is None:
            raise
        return None
    except SailthruError:
        return None
    return None
