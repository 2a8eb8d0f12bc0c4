"""A row as last applied to Sailthru, and its form in the state file's ``records`` table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["AppliedRecord", "from_row", "to_row"]


@dataclass(frozen=True)
class AppliedRecord:
    """One row as last applied to Sailthru.

    ``key`` is the user's key as Sailthru compares it (an email lower-cased and trimmed):
    two records with one ``key`` are one Sailthru user.
    """

    pk: str
    hash: str
    match: str | None
    properties: dict[str, Any]
    groups: frozenset[str]
    optout: str | None = None
    key: str | None = None


def from_row(row: tuple[Any, ...]) -> AppliedRecord:
    """The record of a ``records`` row (pk, hash, match, properties, groups, optout, key)."""
    pk, digest, match, properties, groups, optout, key = row
    return AppliedRecord(
        pk=str(pk), hash=str(digest), match=match, properties=json.loads(properties),
        groups=frozenset(json.loads(groups)), optout=optout, key=key,
    )


def to_row(record: AppliedRecord) -> tuple[Any, ...]:
    """The ``records`` row of ``record`` (pk, hash, match, properties, groups, optout, key)."""
    return (
        record.pk, record.hash, record.match,
        json.dumps(record.properties, sort_keys=True, default=str),
        json.dumps(sorted(record.groups)), record.optout, record.key,
    )
