"""Files that hold customer data are the owner's only (red team: created 0644).

The state file, a run's report folder and its files, and ``serve``'s queue are created 0600
(files) and 0700 (folders), whatever the umask lets through by default.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sailthru_destination._private import private_dir, private_file
from sailthru_destination.options import AppOptions
from sailthru_destination.serve.queue import MessageQueue
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.run import run_sync
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The common default: without care, files come out 0644 and folders 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_sync_run_keeps_its_state_and_report_to_the_owner(tmp_path: Path) -> None:
    home = tmp_path / "home" / ".sailthru-sync"
    with FakeSailthru(api_key="k", api_secret="s") as fake:
        outcome = run_sync(AppOptions("k", "s", fake.url), SyncConfig(name="people"),
                           [Row("line 2", {"id": 1, "email": "ann@example.com"})], home=home)
    assert _mode(outcome.state) == 0o600
    assert _mode(home) == 0o700
    assert _mode(outcome.report) == 0o700
    assert _mode(outcome.report.parent) == 0o700  # reports/
    files = sorted(p.name for p in outcome.report.iterdir())
    assert {"calls.jsonl", "errors.jsonl", "skipped.jsonl", "summary.json",
            "report.html"} <= set(files)
    assert {name: _mode(outcome.report / name) for name in files} == dict.fromkeys(files, 0o600)
    for journal in home.glob("people.db-*"):  # SQLite's WAL files follow the database's mode
        assert _mode(journal) == 0o600, journal


def test_serves_queue_is_the_owners(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "serve" / "queue.db")
    try:
        assert _mode(tmp_path / "serve" / "queue.db") == 0o600
        assert _mode(tmp_path / "serve") == 0o700
    finally:
        queue.close()


def test_an_existing_file_or_folder_keeps_the_mode_its_owner_chose(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    os.chmod(shared, 0o750)
    (shared / "state.db").write_text("")
    os.chmod(shared / "state.db", 0o640)
    private_file(shared / "state.db")
    private_dir(shared)
    assert (_mode(shared), _mode(shared / "state.db")) == (0o750, 0o640)


def test_an_in_memory_queue_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    MessageQueue(":memory:").close()
    assert list(tmp_path.iterdir()) == []
