"""The old path of :mod:`sailthru_destination.features.imports`: existing imports keep working.

New code imports from ``sailthru_destination.features.imports``;
the names are documented on its page.
``X as X`` re-exports them (mypy --strict sees them as exported).
"""

from __future__ import annotations

from ..features.imports import IGNORED_COLUMNS as IGNORED_COLUMNS
from ..features.imports import KEY_COLUMNS as KEY_COLUMNS
from ..features.imports import ExportExpired as ExportExpired
from ..features.imports import ImportedUser as ImportedUser
from ..features.imports import ImportFailed as ImportFailed
from ..features.imports import ImportMode as ImportMode
from ..features.imports import ImportTimeout as ImportTimeout
from ..features.imports import ListImporter as ListImporter
from ..features.imports import PollPolicy as PollPolicy
from ..features.imports import Rule as Rule
from ..features.imports import apply_import as apply_import
from ..features.imports import import_into as import_into
from ..features.imports import iter_import_into as iter_import_into

__all__ = [
    "IGNORED_COLUMNS",
    "KEY_COLUMNS",
    "ExportExpired",
    "ImportFailed",
    "ImportMode",
    "ImportTimeout",
    "ImportedUser",
    "ListImporter",
    "PollPolicy",
    "Rule",
    "apply_import",
    "import_into",
    "iter_import_into",
]
