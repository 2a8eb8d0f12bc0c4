"""One typed model written to each engine, and what Sailthru must hold for it.

Ann's row has a value of every common warehouse type; Bo's row is NULL in each column that
can be NULL. The expected vars are the typing rule of ``sailthru_destination.shaping.values``.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

__all__ = [
    "ANN_VARS", "BO_VARS", "count", "duckdb_model", "postgres_model", "unique_table", "vars_of",
]

_COUNTER = itertools.count()

ANN_VARS: dict[str, Any] = {
    "score": 96.25,                        # numeric(10,2) -> a number, never "96.25"
    "visits": 9_007_199_254_740_993,       # bigint beyond a double's precision, exact
    "vip": True,
    "signup_time": 1_704_071_820,          # timestamptz in a *_time var -> Unix seconds
    "seen_at": "2024-01-01T01:17:00+00:00",  # other timestamptz -> ISO 8601, never str()
    "birthday": "1990-05-04",              # date
    "renewal_date": "2024-01-01",          # timestamptz in a *_date var -> the calendar date
    "tags_0": "a", "tags_1": "b",          # text[] -> a list, flattened
    "prefs_color": "blue", "prefs_n": 3, "prefs_deep_x": 1.5,  # jsonb -> nested vars
    "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",  # uuid -> its text
    "nickname": "Al",
    "note": "",                            # an empty string is a value, not a NULL
}
"""Ann's vars in Sailthru (the fake drops a var set to "", as Sailthru does)."""

BO_VARS: dict[str, Any] = {"score": 10, "vip": False}
"""Bo's vars: an integral numeric is an int; every NULL column sends nothing."""

_ANN = ("1, 'ann@example.com', 96.25, 9007199254740993, true, '2024-01-01 01:17:00+00', "
        "'2024-01-01 01:17:00+00', '1990-05-04', '2024-01-01 23:30:00+00', {tags}, "
        "'{{\"color\": \"blue\", \"n\": 3, \"deep\": {{\"x\": 1.5}}}}', "
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'Al', '', {groups}")
_BO = "2, 'bo@example.com', 10.00, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, " \
      "NULL, NULL"


def unique_table(prefix: str = "people") -> str:
    """A table name no other test of the session uses."""
    return f"{prefix}_{next(_COUNTER)}"


def postgres_model(table: str) -> list[str]:
    """The statements creating ``table`` in PostgreSQL, typed as a warehouse types it."""
    return [
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, email text, score numeric(10,2), "
        "visits bigint, vip boolean, signup_time timestamptz, seen_at timestamptz, "
        "birthday date, renewal_date timestamptz, tags text[], prefs jsonb, ref uuid, "
        "nickname text, note text, groups text[])",
        f"INSERT INTO {table} VALUES ("
        + _ANN.format(tags="ARRAY['a','b']", groups="ARRAY['Newsletter','VIP']") + "), ("
        + _BO + ")",
    ]


def duckdb_model(table: str) -> list[str]:
    """The same model in DuckDB (its JSON type reads back as text: ``--types prefs=json``)."""
    return [
        f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, email VARCHAR, score DECIMAL(10,2), "
        "visits BIGINT, vip BOOLEAN, signup_time TIMESTAMPTZ, seen_at TIMESTAMPTZ, "
        "birthday DATE, renewal_date TIMESTAMPTZ, tags VARCHAR[], prefs JSON, ref UUID, "
        "nickname VARCHAR, note VARCHAR, groups VARCHAR[])",
        f"INSERT INTO {table} VALUES ("
        + _ANN.format(tags="['a','b']", groups="['Newsletter','VIP']") + "), (" + _BO + ")",
    ]


def vars_of(fake: Any, email: str) -> dict[str, Any]:
    """The vars the fake holds for ``email``."""
    user = fake.find_user(email=email)
    assert user is not None, f"{email} is not in the fake"
    return dict(user["vars"])


def count(stdout: str, label: str) -> int:
    """The number a sync summary gives for ``label`` (``updated``, ``API calls`` ...)."""
    found = re.search(rf"^\s*{label}\s+([\d,]+)", stdout, re.MULTILINE)
    assert found, f"no {label!r} in the summary:\n{stdout}"
    return int(found.group(1).replace(",", ""))
