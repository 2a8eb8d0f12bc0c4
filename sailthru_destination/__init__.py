"""Keep Sailthru in sync with a customer-data platform.

The public names are importable from here; everything in a module whose name
starts with an underscore is private and may change.
"""

from __future__ import annotations

import logging

from . import _moved
from . import api as api  # api, calllog, imports: attributes of the package, as in 0.1.0
from . import calllog as calllog
from . import imports as imports
from ._version import __version__  # first: api.py reads it while the package loads
from .destination import SailthruDestination, test_connection
from .errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    RecordError,
    SailthruError,
    TransientError,
)
from .features.commerce import CartChange, Purchase, PurchaseItem, Return
from .features.events import Event
from .features.imports import ImportedUser
from .features.profiles import ProfileChange
from .options import AppOptions, DestinationOptions
from .results import BatchResult, ConnectionCheck, ExportResult, Status
from .shaping.mapping import InvalidValue

_moved.install()  # the module paths of 0.1.0's flat tree keep importing

__all__ = [
    "AppOptions",
    "AuthError",
    "BatchResult",
    "CartChange",
    "ConnectionCheck",
    "DestinationOptions",
    "Event",
    "ExportResult",
    "ImportedUser",
    "InvalidRequest",
    "InvalidValue",
    "NotFound",
    "OutcomeUnknown",
    "PermissionDenied",
    "ProfileChange",
    "Purchase",
    "PurchaseItem",
    "RateLimited",
    "RecordError",
    "Return",
    "SailthruDestination",
    "SailthruError",
    "Status",
    "TransientError",
    "__version__",
    "test_connection",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
