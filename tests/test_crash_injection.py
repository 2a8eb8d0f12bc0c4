"""The CLI stopped at its N-th API call (SIGKILL, SIGTERM, Ctrl-C), then resumed: the fake
ends as the model says (see :mod:`crash_harness`). CI runs a 20-row history at a sample of
N; ``bench/crash_injection.py`` runs every N of a 200-row history."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import crash_harness

ROWS = 20


def test_a_history_stopped_at_any_call_resumes_to_what_the_model_says(tmp_path: Path) -> None:
    total = crash_harness.calls_in_a_clean_run(tmp_path, ROWS)
    # Every call is stopped right after the fake applied it: for a write, the window between
    # Sailthru doing it and the state learning of it. SIGKILL over the whole run (the first
    # call, the last, and an even spread), SIGTERM and Ctrl-C mid-way through the users run
    # (an event in flight at a signal is the sent-keys store's part).
    kills = sorted({1, total // 3, total // 2, (2 * total) // 3, total - 1, total})
    cases = [(at, signal.SIGKILL) for at in kills]
    cases += [(total // 3, signal.SIGTERM), (total // 2, signal.SIGINT)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(
            lambda case: crash_harness.stop_and_resume(tmp_path, ROWS, *case), cases))
    assert [(o.at, o.signum, o.problems) for o in outcomes if o.problems] == []
    assert all(o.stopped_in for o in outcomes), [(o.at, o.stopped_in) for o in outcomes]
    assert {o.stopped_in for o in outcomes} == {"users", "events"}
    for outcome in outcomes:  # a handled signal exits as a shell reports it: 128 + signal
        assert outcome.exit_code == (-9 if outcome.signum == signal.SIGKILL
                                     else 128 + outcome.signum), outcome
