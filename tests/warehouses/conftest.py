"""Fixtures of the warehouse tests: one real PostgreSQL server for the session, the fake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_cluster import PostgresCluster
from test_cli import fake

__all__ = ["fake", "postgres"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL server, started once and stopped at the end of the session."""
    try:
        cluster = PostgresCluster()
    except RuntimeError as exc:  # not installed, or it would not start: say how to fix it
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()
