"""The standalone runner: read a model, diff it against the last run's state, push what changed.

``config`` says which column means what, ``runner`` does the diff and the export, ``gone``
applies the delete behaviour to rows gone from the model, ``plan`` says what a run would do.
Beside them: ``warehouse/`` reads rows (CSV, JSON lines, SQL), ``memory/`` remembers what was
applied (SQLite) and keeps a second run of a model out, ``bulkload/`` sends large batches
through the job API, ``reporting/`` writes the summary, the run report and the audit.
"""

from __future__ import annotations

from .config import ConfigError, SyncConfig, load_config
from .memory.state import SyncState
from .runner import RunSummary, SyncRunner
from .warehouse.sources import Row, SourceError, open_source

__all__ = [
    "ConfigError",
    "Row",
    "RunSummary",
    "SourceError",
    "SyncConfig",
    "SyncRunner",
    "SyncState",
    "load_config",
    "open_source",
]
