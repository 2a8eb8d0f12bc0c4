"""Defaults that depend on the model's columns, settled once its first row is read."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from ...sync.config import SyncConfig, keyed_by_order
from ...sync.warehouse.sources import Row

__all__ = ["with_column_defaults"]


def with_column_defaults(
    config: SyncConfig, rows: Iterable[Row], *, primary_key_given: bool
) -> tuple[SyncConfig, Iterable[Row]]:
    """``config`` with the defaults ``rows`` call for, and the same rows (none lost).

    A purchases model is identified by its orders: its primary key defaults to the order
    column (``order_id``) when the model has one, else ``id`` as for every model.
    """
    if config.object != "purchases" or primary_key_given:
        return config, rows
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return config, ()
    config = keyed_by_order(config, first.data, primary_key_given=False)
    return config, itertools.chain([first], iterator)
