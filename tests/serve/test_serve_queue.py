"""The durable queue by itself: durability settings, all-or-nothing appends, counts, replay."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from serving import encoded

from sailthru_destination.serve.queue import DiskFull, Encoded, MessageQueue, _is_full


def track(n: int, **extra: object) -> dict[str, object]:
    return {"type": "track", "messageId": f"m{n}", "userId": "u", "event": "é", **extra}


def test_the_file_is_in_wal_mode_and_every_commit_is_synced_in_full(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    queue.append(encoded([track(1)]))
    # WAL is a property of the file: another connection (the next start) sees it ...
    other = sqlite3.connect(str(tmp_path / "q.sqlite"))
    assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # ... and a committed message is in the write-ahead log before the 200, readable by it.
    assert (tmp_path / "q.sqlite-wal").stat().st_size > 0
    assert other.execute("SELECT message_id FROM messages").fetchall() == [("m1",)]
    other.close()
    # synchronous is per connection: FULL (2) syncs the log at every commit, not only at
    # checkpoints as NORMAL (1) would in WAL mode.
    assert queue._db.execute("PRAGMA synchronous").fetchone() == (2,)
    # Results are not synced one by one (a lost one only means the message is taken again,
    # and sent keys stop a second send); the next intake commit syncs them with it.
    assert queue._marks.execute("PRAGMA synchronous").fetchone() == (1,)
    queue.close()


def test_both_connections_wait_30_s_for_a_lock_another_process_holds(tmp_path: Path) -> None:
    # `serve replay`, a backup or a checkpoint may hold the file's lock for a while: intake and
    # the worker's results wait for it (30 s) instead of failing after SQLite's default 5 s,
    # which would answer senders 503 and leave results unwritten (mutation survivor, seed 3013).
    queue = MessageQueue(tmp_path / "q.sqlite")
    assert queue._db.execute("PRAGMA busy_timeout").fetchone() == (30_000,)
    assert queue._marks.execute("PRAGMA busy_timeout").fetchone() == (30_000,)
    queue.close()


def test_a_failing_insert_leaves_nothing_half_written(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    queue.append(encoded([track(0)]))
    # The second row cannot be bound: the first, already inserted, must be rolled back.
    bad = [Encoded("m1", '{"a":1}'), Encoded(["not", "text"], "{}")]  # type: ignore[arg-type]
    with pytest.raises(sqlite3.Error):
        queue.append(bad)
    assert (queue.depth(), queue.size()) == (1, len(encoded([track(0)])[0].body.encode()))
    other = sqlite3.connect(str(tmp_path / "q.sqlite"))
    assert other.execute("SELECT message_id FROM messages").fetchall() == [("m0",)]
    other.close()
    # Not left inside a transaction: the next request is stored as usual.
    assert queue.append(encoded([track(2)])) == 1
    assert [m["messageId"] for _, m in queue.take(10)] == ["m0", "m2"]


def test_a_full_file_raises_disk_full_and_keeps_what_was_queued(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    queue.append(encoded([track(0)]))
    pages = queue._db.execute("PRAGMA page_count").fetchone()[0]
    queue._db.execute(f"PRAGMA max_page_count = {pages + 1}")
    with pytest.raises(DiskFull, match="full"):
        queue.append(encoded(track(n, properties={"p": "x" * 9_000}) for n in range(1, 9)))
    assert queue.depth() == 1
    assert [m["messageId"] for _, m in queue.take(10)] == ["m0"]


def test_other_errors_are_not_taken_for_a_full_disk(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    queue.close()
    with pytest.raises(sqlite3.ProgrammingError):
        queue.append(encoded([track(0)]))


def test_take_waits_for_the_next_append_and_wakes_at_once(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    assert queue.take(5) == []
    timer = threading.Timer(0.05, lambda: queue.append(encoded([track(7)])))
    timer.start()
    taken = queue.take(5, wait=30.0)
    timer.join()
    assert [m["messageId"] for _, m in taken] == ["m7"]


def test_take_with_messages_waiting_returns_them_without_waiting(tmp_path: Path) -> None:
    # The worker asks with a long wait; messages already queued must come back at once, not
    # after the wait (mutation survivor, seed 3101: `not rows or wait`). A thread bounds the
    # hang instead of timing the call.
    queue = MessageQueue(tmp_path / "q.sqlite")
    queue.append(encoded([track(1), track(2)]))
    taken: list[Any] = []
    worker = threading.Thread(target=lambda: taken.extend(queue.take(5, wait=600.0)),
                              daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "take() waited although two messages were queued"
    assert [m["messageId"] for _, m in taken] == ["m1", "m2"]
    queue.append(encoded([track(3)]))  # wakes the worker if the mutant holds it
    queue.close()


def test_a_message_twice_in_one_request_is_stored_once_and_said_left_out(tmp_path: Path) -> None:
    # The second copy of an identical message in the same request is a duplicate (counted,
    # silent), not "stored now" although it has the stored row's arrival time and text; a
    # different message under a taken id is a conflict (mutation survivor, seed 3301).
    queue = MessageQueue(tmp_path / "q.sqlite")
    stored = queue.store(encoded([track(1), track(1), track(1, event="other")]))
    assert (stored.added, stored.left_out, stored.conflicts) == (1, [1, 2], [2])
    assert [m["messageId"] for _, m in queue.take(5)] == ["m1"]
    queue.close()


def test_a_resend_that_differs_only_in_sent_at_is_no_conflict(tmp_path: Path) -> None:
    # An SDK stamps sentAt anew on each attempt: that resend is a silent duplicate. Any other
    # difference under the same id is a conflict, reported (mutation survivors, seed 3401).
    queue = MessageQueue(tmp_path / "q.sqlite")
    queue.store(encoded([track(1, sentAt="2026-12-07T00:00:00Z")]))
    resent = queue.store(encoded([track(1, sentAt="2026-12-07T00:00:09Z")]))
    assert (resent.added, resent.left_out, resent.conflicts) == (0, [0], [])
    spaced = [Encoded("m1", json.dumps(track(1, sentAt="x"), indent=2))]  # spaced differently
    assert queue.store(spaced).conflicts == []
    other = queue.store(encoded([track(1, sentAt="2026-12-07T00:00:09Z", event="other")]))
    assert (other.left_out, other.conflicts) == ([0], [0])
    listed = queue.store([Encoded("m1", "[1, 2]")])  # JSON, but no message at all
    assert listed.conflicts == [0]
    queue.close()


def test_take_waits_less_than_a_second_too(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "deep" / "er" / "q.sqlite")  # its folders are made
    timer = threading.Timer(0.05, lambda: queue.append(encoded([track(8)])))
    timer.start()
    taken = queue.take(5, wait=0.9)
    timer.join()
    assert [m["messageId"] for _, m in taken] == ["m8"]


@pytest.mark.parametrize("unbindable", [False, True])
def test_requests_committed_together_fail_alone(tmp_path: Path, unbindable: bool) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    # A row SQLite cannot bind, or one whose write fails (another kind of error).
    broken: Any = ["x"] if unbindable else _Unstorable(sqlite3.OperationalError("locked"))
    outcomes: dict[str, object] = {}

    def send(name: str, rows: list[Encoded]) -> None:
        try:
            outcomes[name] = queue.append(rows)
        except sqlite3.Error as exc:
            outcomes[name] = exc

    first = threading.Thread(target=send, args=("first", encoded([track(0)])))
    good = threading.Thread(target=send, args=("good", encoded([track(1), track(2)])))
    bad = threading.Thread(target=send, args=("bad", [Encoded("m3", "{}"), Encoded("m4", broken)]))
    with queue._arrived:  # the first commit waits on the file: the next two group up
        first.start()
        while not queue._committing:
            time.sleep(0.001)
        good.start()
        bad.start()
        while len(queue._waiting) < 2:
            time.sleep(0.001)
    for thread in (first, good, bad):
        thread.join(10)
    assert outcomes["first"] == 1
    assert outcomes["good"] == 2  # stored, though committed with a request that failed
    assert isinstance(outcomes["bad"], sqlite3.Error)
    assert [m["messageId"] for _, m in queue.take(10)] == ["m0", "m1", "m2"]
    assert queue.depth() == 3


def test_a_full_disk_is_told_from_other_errors_on_every_python() -> None:
    # Python 3.10's sqlite3 has no error codes on exceptions: the message tells it then.
    assert _is_full(sqlite3.OperationalError("database or disk is full"))
    # An I/O error (a file-size limit, a failing disk) is no fault of the request either:
    # 503 with Retry-After, not a 500 (red team t20).
    assert _is_full(sqlite3.OperationalError("disk I/O error"))
    assert not _is_full(sqlite3.OperationalError("UNIQUE constraint failed"))
    for code in (13, 10, 10 | (3 << 8)):  # SQLITE_FULL, SQLITE_IOERR, SQLITE_IOERR_WRITE
        coded = sqlite3.OperationalError("whatever")
        coded.sqlite_errorcode = code  # type: ignore[attr-defined]
        assert _is_full(coded)


def test_take_returns_empty_when_the_wait_passes(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    assert queue.take(5, wait=0.01) == []


def test_oldest_age_counts_from_the_oldest_waiting_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a clock of the test's own: the wall clock made this flake on a loaded machine.
    import types

    from sailthru_destination.serve import queue as queue_module

    now = [1_000.0]
    monkeypatch.setattr(queue_module, "time", types.SimpleNamespace(time=lambda: now[0]))
    queue = MessageQueue(tmp_path / "q.sqlite")
    assert queue.oldest_age() == 0.0
    queue.append(encoded([track(0)]))
    now[0] += 20.0
    queue.append(encoded([track(1)]))
    now[0] += 5.0
    assert queue.oldest_age() == 25.0
    [(seq, _), _] = queue.take(2)
    queue.done(seq, "sent", "")
    assert queue.oldest_age() == 5.0


def test_a_failure_marked_without_saying_retryable_is_not_replayed(tmp_path: Path) -> None:
    # `serve replay` requeues only what failed retryably: a result that does not say so is
    # final, never sent again by a replay (mutation survivor, seed 3102: the default flipped).
    queue = MessageQueue(tmp_path / "q.sqlite")
    assert repr(queue) == f"MessageQueue({str(tmp_path / 'q.sqlite')!r})"  # names its file
    queue.append(encoded([track(1), track(2)]))
    (first, _), (second, _) = queue.take(5)
    queue.done(first, "failed", "refused for good")
    queue.done(second, "failed", "a 503", retryable=True)
    assert queue.replay() == 1
    assert [m["messageId"] for _, m in queue.take(5)] == ["m2"]
    queue.close()


def test_a_queue_written_before_replay_existed_opens_and_replays(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    old = sqlite3.connect(str(path))
    old.executescript(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, received REAL NOT NULL,"
        " message_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, status TEXT, detail TEXT);"
        "INSERT INTO messages (received, message_id, body, status, detail)"
        " VALUES (1, 'old', '{}', 'failed', 'Sailthru was down');"
    )
    old.commit()
    old.close()
    queue = MessageQueue(path)
    assert queue.depth() == 0
    assert queue.replay() == 0  # an old failure's retryability is unknown: left alone
    queue.append(encoded([track(1)]))
    [(seq, _)] = queue.take(1)
    queue.done(seq, "failed", "rate limited", retryable=True)
    assert queue.replay("RATE") == 1  # the reason matches whatever its case


class QueueModel(RuleBasedStateMachine):
    """Appends (with repeated ids), results, replays and restarts, checked against a model."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp())
        self.queue = MessageQueue(self.folder / "q.sqlite")
        self.bodies: dict[str, str] = {}  # message id -> stored text, in arrival order
        self.status: dict[str, tuple[str | None, bool]] = {}  # id -> (status, retryable)

    def pending(self) -> list[str]:
        return [m for m in self.bodies if self.status[m][0] is None]

    @rule(ids=st.lists(st.integers(0, 30), min_size=1, max_size=6),
          text=st.text(max_size=5))  # fmt: skip
    def append(self, ids: list[int], text: str) -> None:
        messages = [Encoded(f"m{n}", json.dumps({"n": n, "t": text}, ensure_ascii=False))
                    for n in ids]  # fmt: skip
        new = {m.message_id for m in messages} - set(self.bodies)
        assert self.queue.append(messages) == len(new)
        for message in messages:
            if message.message_id in new and message.message_id not in self.bodies:
                self.bodies[message.message_id] = message.body
                self.status[message.message_id] = (None, False)

    @precondition(lambda self: bool(self.pending()))
    @rule(count=st.integers(1, 4), outcome=st.sampled_from(["sent", "failed", "failed!"]))
    def settle(self, count: int, outcome: str) -> None:
        taken = self.queue.take(count)
        assert [self._id(seq) for seq, _ in taken] == self.pending()[:count]
        for seq, _ in taken:
            status = outcome.rstrip("!")
            self.queue.done(seq, status, "Sailthru said no", retryable=outcome == "failed!")
            self.queue.done(seq, "sent", "twice")  # a second result changes nothing
            self.status[self._id(seq)] = (status, outcome == "failed!")

    @rule()
    def replay(self) -> None:
        again = [m for m, (s, r) in self.status.items() if s == "failed" and r]
        assert self.queue.replay() == len(again)
        for message in again:
            self.status[message] = (None, False)

    @rule()
    def restart(self) -> None:
        self.queue.close()
        self.queue = MessageQueue(self.folder / "q.sqlite")

    def _id(self, seq: int) -> str:
        row = self.queue._db.execute("SELECT message_id FROM messages WHERE seq = ?", (seq,))
        return str(row.fetchone()[0])

    @invariant()
    def counts_match(self) -> None:
        pending = self.pending()
        assert self.queue.depth() == len(pending)
        assert self.queue.size() == sum(len(self.bodies[m].encode()) for m in pending)
        statuses = [status for _, status, _ in self.queue.results()]
        assert statuses == [self.status[m][0] for m in self.bodies]

    def teardown(self) -> None:
        self.queue.close()
        shutil.rmtree(self.folder)


QueueModel.TestCase.settings = settings(
    max_examples=15, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
test_the_queue_matches_its_model = QueueModel.TestCase


def test_a_result_is_not_written_in_the_middle_of_a_commit(tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    queue.append(encoded([track(0)]))
    [(seq, _)] = queue.take(1)
    writer = threading.Thread(target=queue.done, args=(seq, "sent", ""))
    with queue._arrived:  # what a commit holds: the result must wait for it to end
        writer.start()
        writer.join(0.05)
        assert writer.is_alive()
        assert queue.depth() == 1
    writer.join(10)
    assert queue.depth() == 0


class _Unstorable(str):
    """A body SQLite asks to adapt, failing with ``error`` (as a driver or disk error would)."""

    def __new__(cls, error: Exception) -> _Unstorable:
        text = super().__new__(cls, "{}")
        text.error = error  # type: ignore[attr-defined]
        return text

    def __conform__(self, _protocol: object) -> str:
        raise self.error  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "error", [sqlite3.OperationalError("database is locked"), RuntimeError("driver bug")]
)
def test_an_error_in_the_middle_of_a_request_stores_none_of_it_and_the_next_is_stored(
    tmp_path: Path, error: Exception
) -> None:
    queue = MessageQueue(tmp_path / "q.sqlite")
    failing = [Encoded("a1", '{"n":1}'), Encoded("a2", _Unstorable(error))]
    with pytest.raises(type(error)):
        queue.append(failing)
    assert queue.depth() == 0
    assert queue.append(encoded([track(3)])) == 1  # no transaction left open
    assert [m["messageId"] for _, m in queue.take(10)] == ["m3"]
