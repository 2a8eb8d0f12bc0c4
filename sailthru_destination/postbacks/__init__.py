"""The old path of :mod:`sailthru_destination.features.postbacks`: existing imports keep working.

New code imports from ``sailthru_destination.features.postbacks``;
the names are documented on its page.
``X as X`` re-exports them (mypy --strict sees them as exported).
"""

from __future__ import annotations

from ..features.postbacks import MAX_BODY_BYTES as MAX_BODY_BYTES
from ..features.postbacks import HardBounce as HardBounce
from ..features.postbacks import OptoutChange as OptoutChange
from ..features.postbacks import Postback as Postback
from ..features.postbacks import PostbackError as PostbackError
from ..features.postbacks import UserUpdate as UserUpdate
from ..features.postbacks import Verify as Verify
from ..features.postbacks import make_postback_app as make_postback_app
from ..features.postbacks import parse_postback as parse_postback
from ..features.postbacks import sign_postback as sign_postback
from ..features.postbacks import verify_postback as verify_postback

__all__ = [
    "MAX_BODY_BYTES",
    "HardBounce",
    "OptoutChange",
    "Postback",
    "PostbackError",
    "UserUpdate",
    "Verify",
    "make_postback_app",
    "parse_postback",
    "sign_postback",
    "verify_postback",
]
