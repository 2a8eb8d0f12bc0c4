"""Keep Sailthru in sync with a customer-data platform.

The public names are importable from here; everything in a module whose name
starts with an underscore is private and may change.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
