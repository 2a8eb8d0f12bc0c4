"""PostgreSQL dates Python cannot hold (``'infinity'``, a year past 9999) read as a value that
fails its row, instead of an error that ends the whole read.

psycopg 3 turns such a ``date``/``timestamp``/``timestamptz`` into a ``DataError`` raised while
the rows are fetched, which no row could be blamed for. The loaders here, registered on each
connection SQLAlchemy opens with psycopg 3, give an :class:`~..values.OutOfRange` instead: the
typing rule (:func:`~..values.scalar_var`) refuses it naming the column, and the other rows
are sent.
"""

from __future__ import annotations

from typing import Any

from ...shaping.values import OutOfRange

__all__ = ["read_out_of_range_dates"]


def _tolerant(base: Any) -> type:
    """A subclass of the psycopg loader ``base`` that returns :class:`OutOfRange` for a value
    it refuses."""
    import psycopg

    def load(self: Any, data: Any) -> Any:
        try:
            return base.load(self, data)
        except psycopg.DataError as exc:
            return OutOfRange(str(exc))

    return type(f"Tolerant{base.__name__}", (base,), {"load": load})


def read_out_of_range_dates(dbapi_connection: Any, _record: Any = None) -> None:
    """SQLAlchemy ``connect`` listener: on a psycopg 3 connection, load the date types with
    loaders that never raise for a date out of Python's range (other drivers: unchanged)."""
    adapters = getattr(dbapi_connection, "adapters", None)
    if adapters is None or not type(dbapi_connection).__module__.startswith("psycopg"):
        return
    from psycopg.types import datetime as pg

    for name, loader in (("date", pg.DateLoader), ("date", pg.DateBinaryLoader),
                         ("timestamp", pg.TimestampLoader),
                         ("timestamp", pg.TimestampBinaryLoader),
                         ("timestamptz", pg.TimestamptzLoader),
                         ("timestamptz", pg.TimestamptzBinaryLoader)):
        adapters.register_loader(name, _tolerant(loader))
