"""The list-creation mutex holds across threads and across processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from sailthru_destination.once.locks import LocalLock, LockTimeout, NamedLock


def test_local_lock_satisfies_the_named_lock_protocol(tmp_path: Path) -> None:
    assert isinstance(LocalLock(tmp_path), NamedLock)


def test_threads_never_hold_the_same_name_at_once(tmp_path: Path) -> None:
    lock = LocalLock(tmp_path)
    inside = 0
    most = 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, most
        for _ in range(20):
            with lock.hold("Newsletter"):
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1


def test_different_names_do_not_wait_for_each_other(tmp_path: Path) -> None:
    lock = LocalLock(tmp_path, timeout=0.2)
    with lock.hold("A"), lock.hold("B"):
        pass


def _hold_and_record(lock_dir: str, log: str, n: int) -> None:
    lock = LocalLock(lock_dir, scope="acct")
    for _ in range(n):
        with lock.hold("Shared List"):
            with open(log, "a") as f:
                f.write("enter\n")
            time.sleep(0.002)
            with open(log, "a") as f:
                f.write("exit\n")


def test_processes_never_hold_the_same_name_at_once(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_hold_and_record, args=(str(tmp_path), str(log), 10)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    lines = log.read_text().split()
    assert len(lines) == 60
    assert lines == ["enter", "exit"] * 30


def test_a_lock_held_too_long_times_out_with_a_clear_error(tmp_path: Path) -> None:
    holder = LocalLock(tmp_path, timeout=5)
    waiter = LocalLock(tmp_path, timeout=0.05)
    with holder.hold("Busy"):
        with pytest.raises(LockTimeout, match="Busy"):
            with waiter.hold("Busy"):
                pass


def test_lock_files_do_not_contain_the_list_name_or_scope(tmp_path: Path) -> None:
    lock = LocalLock(tmp_path, scope="secret-api-key")
    with lock.hold("VIP / Gold"):
        pass
    names = [p.name for p in tmp_path.iterdir()]
    assert names
    assert all("secret" not in n and "VIP" not in n for n in names)
