"""The standalone runner: read a model, diff it against the last run's state, push what changed.

``sources`` reads rows (CSV, JSON lines, SQL), ``config`` says which column means what,
``state`` remembers what was applied (SQLite), ``runner`` does the diff and the export,
``gone`` applies the delete behaviour to rows gone from the model, ``bulk`` sends large
batches through the job API, ``report`` writes the run report, ``runlock`` keeps a second
run of a model out while one is going.
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
