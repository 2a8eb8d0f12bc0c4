"""Old module paths of the flat tree (0.1.0), still importable after the regrouping.

The tree was regrouped by concern (``transport/``, ``features/``, ``shaping/``, ``once/``,
``sync/memory/`` ...). Code written against 0.1.0 imports modules such as
``sailthru_destination.profiles`` or ``sailthru_destination.sync.state``, and pickles name the
module a class was defined in (``sailthru_destination.profile_payload.ProfileChange``). An
import hook answers each old path with the module now holding that code: the same module
object, so classes, exceptions and ``isinstance`` agree whichever path found them. Importing an
old path warns once (``DeprecationWarning``) with the new path. The four documented old paths
(``api``, ``calllog``, ``imports``, ``postbacks``) are real packages instead, so type checkers
see them. ``python tools/regroup.py shims`` writes :data:`MOVED` from the regrouping's map.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "install"]

MOVED: dict[str, str] = {
    "sailthru_destination._adaptive":
        "sailthru_destination.transport._adaptive",
    "sailthru_destination._commerce_records":
        "sailthru_destination.features._commerce_records",
    "sailthru_destination._concurrency":
        "sailthru_destination.transport._concurrency",
    "sailthru_destination._http":
        "sailthru_destination.transport._http",
    "sailthru_destination._invalid":
        "sailthru_destination.shaping._invalid",
    "sailthru_destination._json":
        "sailthru_destination.shaping._json",
    "sailthru_destination._postback_fields":
        "sailthru_destination.features._postback_fields",
    "sailthru_destination._protocol":
        "sailthru_destination.transport._protocol",
    "sailthru_destination._transport":
        "sailthru_destination.transport._transport",
    "sailthru_destination.amounts":
        "sailthru_destination.shaping.amounts",
    "sailthru_destination.auth":
        "sailthru_destination.transport.auth",
    "sailthru_destination.carts":
        "sailthru_destination.features.carts",
    "sailthru_destination.cli._columns":
        "sailthru_destination.cli._model._columns",
    "sailthru_destination.cli._defaults":
        "sailthru_destination.cli._model._defaults",
    "sailthru_destination.cli._model_state":
        "sailthru_destination.cli._model._model_state",
    "sailthru_destination.cli._open":
        "sailthru_destination.cli._model._open",
    "sailthru_destination.commerce":
        "sailthru_destination.features.commerce",
    "sailthru_destination.decide":
        "sailthru_destination.features.decide",
    "sailthru_destination.doubt":
        "sailthru_destination.once.doubt",
    "sailthru_destination.doubt_redis":
        "sailthru_destination.once.doubt_redis",
    "sailthru_destination.events":
        "sailthru_destination.features.events",
    "sailthru_destination.lists":
        "sailthru_destination.once.lists",
    "sailthru_destination.locks":
        "sailthru_destination.once.locks",
    "sailthru_destination.mapping":
        "sailthru_destination.shaping.mapping",
    "sailthru_destination.nulls":
        "sailthru_destination.shaping.nulls",
    "sailthru_destination.profile_payload":
        "sailthru_destination.features.profile_payload",
    "sailthru_destination.profiles":
        "sailthru_destination.features.profiles",
    "sailthru_destination.purchases":
        "sailthru_destination.features.purchases",
    "sailthru_destination.ratelimit":
        "sailthru_destination.transport.ratelimit",
    "sailthru_destination.retries":
        "sailthru_destination.transport.retries",
    "sailthru_destination.row_contract":
        "sailthru_destination.shaping.row_contract",
    "sailthru_destination.sentkeys":
        "sailthru_destination.once.sentkeys",
    "sailthru_destination.sentkeys_redis":
        "sailthru_destination.once.sentkeys_redis",
    "sailthru_destination.sync._db":
        "sailthru_destination.sync.memory._db",
    "sailthru_destination.sync.audit":
        "sailthru_destination.sync.reporting.audit",
    "sailthru_destination.sync.audit_read":
        "sailthru_destination.sync.reporting.audit_read",
    "sailthru_destination.sync.bulk":
        "sailthru_destination.sync.bulkload.bulk",
    "sailthru_destination.sync.bulk_choice":
        "sailthru_destination.sync.bulkload.bulk_choice",
    "sailthru_destination.sync.column_check":
        "sailthru_destination.sync.warehouse.column_check",
    "sailthru_destination.sync.columns":
        "sailthru_destination.sync.warehouse.columns",
    "sailthru_destination.sync.dialect":
        "sailthru_destination.sync.warehouse.dialect",
    "sailthru_destination.sync.digest":
        "sailthru_destination.sync.memory.digest",
    "sailthru_destination.sync.doubtstore":
        "sailthru_destination.sync.memory.doubtstore",
    "sailthru_destination.sync.intents":
        "sailthru_destination.sync.memory.intents",
    "sailthru_destination.sync.jobfile":
        "sailthru_destination.sync.bulkload.jobfile",
    "sailthru_destination.sync.jobs":
        "sailthru_destination.sync.bulkload.jobs",
    "sailthru_destination.sync.pg_dates":
        "sailthru_destination.sync.warehouse.pg_dates",
    "sailthru_destination.sync.purchase_import":
        "sailthru_destination.sync.bulkload.purchase_import",
    "sailthru_destination.sync.readahead":
        "sailthru_destination.sync.memory.readahead",
    "sailthru_destination.sync.records":
        "sailthru_destination.sync.memory.records",
    "sailthru_destination.sync.report":
        "sailthru_destination.sync.reporting.report",
    "sailthru_destination.sync.report_assets":
        "sailthru_destination.sync.reporting.report_assets",
    "sailthru_destination.sync.report_html":
        "sailthru_destination.sync.reporting.report_html",
    "sailthru_destination.sync.report_reasons":
        "sailthru_destination.sync.reporting.report_reasons",
    "sailthru_destination.sync.report_timeline":
        "sailthru_destination.sync.reporting.report_timeline",
    "sailthru_destination.sync.retry_memory":
        "sailthru_destination.sync.memory.retry_memory",
    "sailthru_destination.sync.runlock":
        "sailthru_destination.sync.memory.runlock",
    "sailthru_destination.sync.seen":
        "sailthru_destination.sync.memory.seen",
    "sailthru_destination.sync.sentstore":
        "sailthru_destination.sync.memory.sentstore",
    "sailthru_destination.sync.settle":
        "sailthru_destination.sync.memory.settle",
    "sailthru_destination.sync.sources":
        "sailthru_destination.sync.warehouse.sources",
    "sailthru_destination.sync.state":
        "sailthru_destination.sync.memory.state",
    "sailthru_destination.sync.summary":
        "sailthru_destination.sync.reporting.summary",
    "sailthru_destination.testing._commerce":
        "sailthru_destination.testing._endpoints._commerce",
    "sailthru_destination.testing._jobs":
        "sailthru_destination.testing._endpoints._jobs",
    "sailthru_destination.testing._lists":
        "sailthru_destination.testing._endpoints._lists",
    "sailthru_destination.testing._sends":
        "sailthru_destination.testing._endpoints._sends",
    "sailthru_destination.testing._tracking":
        "sailthru_destination.testing._endpoints._tracking",
    "sailthru_destination.testing._users":
        "sailthru_destination.testing._endpoints._users",
    "sailthru_destination.values":
        "sailthru_destination.shaping.values",
    "sailthru_destination.varnames":
        "sailthru_destination.shaping.varnames",
}
"""Old module path → the module that holds its code now."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module that holds its code now."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._specs[new] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just set the old path's spec on the shared module: give it
        # back its own, so reloading or inspecting it still finds the real file.
        module.__spec__ = self._specs.get(module.__name__, module.__spec__)


_FINDER = _MovedModules()


def install() -> None:
    """Put the hook on ``sys.meta_path`` (once), behind the regular finders."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
