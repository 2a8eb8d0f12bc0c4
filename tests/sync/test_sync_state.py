"""State: applied rows, this run's keys, and sent keys survive a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sailthru_destination.once.sentkeys import KeyState, SentKeys
from sailthru_destination.sync.memory.state import AppliedRecord, SyncState


def _record(pk: str) -> AppliedRecord:
    return AppliedRecord(pk, "h" + pk, f"{pk}@example.com", {"a": 1}, frozenset({"G"}))


def test_applied_rows_survive_a_reopen_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SyncState(path) as state:
        state.put(_record("1"))
    with SyncState(path) as state:
        assert state.get("1") == _record("1")
        assert state.get_hash("1") == "h1"
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_keys_not_seen_in_this_run_are_gone_and_duplicates_are_caught(tmp_path: Path) -> None:
    with SyncState(tmp_path / "s.db") as state:
        for pk in ("1", "2", "3"):
            state.put(_record(pk))
        state.start_run()
        assert state.see("2") is True
        assert state.see("2") is False
        assert [r.pk for r in state.gone()] == ["1", "3"]
        assert state.gone_count() == 2


def test_state_is_a_sent_keys_store_that_claims_once(tmp_path: Path) -> None:
    with SyncState(tmp_path / "s.db") as state:
        assert isinstance(state, SentKeys)
        assert state.claim("purchase", "o1") is True
        assert state.claim("purchase", "o1") is False
        assert state.state("purchase", "o1") is KeyState.PENDING
        state.settle("purchase", "o1", KeyState.SENT)
        state.claim("event", "e1")
        state.release("event", "e1")
    with SyncState(tmp_path / "s.db") as state:
        assert state.state("purchase", "o1") is KeyState.SENT
        assert state.state("event", "e1") is None


class _InterruptAfterBegin:
    """A state connection on which Ctrl-C lands right after a write transaction began."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def execute(self, sql: str, *args: Any) -> Any:
        cursor = self._db.execute(sql, *args)
        if self.armed and sql == "BEGIN IMMEDIATE":
            self.armed = False
            raise KeyboardInterrupt
        return cursor


def test_an_interrupt_between_begin_and_the_writes_still_lets_the_state_close_and_keep_them(
    tmp_path: Path,
) -> None:
    # Seen in CI: SIGTERM during a flush left a transaction open; closing the state then
    # failed ("cannot start a transaction within a transaction") and no summary was written.
    state = SyncState(tmp_path / "s.db")
    state._db = _InterruptAfterBegin(state._db)  # type: ignore[assignment]
    state.put(AppliedRecord("1", "h", "ann@example.com", {"plan": "gold"}, frozenset()))
    with pytest.raises(KeyboardInterrupt):
        state.flush()
    state.close()
    with SyncState(tmp_path / "s.db") as again:
        kept = again.get("1")
    assert kept is not None
    assert kept.properties == {"plan": "gold"}
