"""Crash injection: ``sailthru-destination sync`` stopped at its N-th API call, then resumed.

A history: a users model synced once (v1), then its next version (v2: rows deleted with
delete behaviour ``delete``, emails changed, vars dropped and added, groups changed, rows
added) and an events model, then a third version (v3: what v2 created or renamed is
deleted, what it added dropped). The run of v2 and the events is stopped at the N-th call
the fake answers, right after the fake applied it and before the reply leaves (the window
between a write being applied and the state learning of it): by SIGKILL, SIGTERM or
SIGINT. Then the next runs (v3 and the events) go to the end, and the fake must hold what
the model says: each live row's user with the row's vars and lists, no user of a deleted
row or of an old email, no event twice, every event posted or reported as of unknown
outcome.

Used by ``tests/test_crash_injection.py`` (a small history, a sample of N) and by
``bench/crash_injection.py`` (200 rows, every N).

The CLI runs in a subprocess against a fake in this process. The only thing the launcher
changes is the second read that proves a delete (``delete_confirm_after``, 1 s against
Sailthru's lagging reads): the fake's reads never lag, and hundreds of runs must fit.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sailthru_destination.testing import FakeSailthru
from sailthru_destination.testing import _app as fake_app

KEY, SECRET = "crash-key", "crash-secret"
LIMITS = {"default": 100_000.0}
_LAUNCH = (
    "import functools, sys\n"
    "from sailthru_destination.sync import config\n"
    "config.DestinationOptions = functools.partial(config.DestinationOptions, "
    "delete_confirm_after=0.0)\n"
    "from sailthru_destination.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
COMMAND = [sys.executable, "-c", _LAUNCH]
_TIMEOUT = 120.0


@dataclass(frozen=True)
class History:
    """The models of one history, written under ``folder``; ``rows`` users in v1."""

    folder: Path
    rows: int

    def v1(self) -> list[dict[str, str]]:
        """The first version of the users model."""
        return [{"id": str(i), "email": f"u{i}@crash.example.com",
                 "plan": ("gold", "free")[i % 2], "city": "Lyon" if i % 3 == 0 else "",
                 "groups": "A" if i % 2 else "A;B"} for i in range(self.rows)]

    def v2(self) -> list[dict[str, str]]:
        """The next version: deletes, email changes, dropped vars, new groups, new rows."""
        rows = []
        for row in self.v1():
            i = int(row["id"])
            if i % 6 == 5:
                continue  # gone from the model: deleted
            row = dict(row)
            if i % 7 == 3:
                row["email"] = f"u{i}.moved@crash.example.com"
            if i % 5 == 1:
                row["plan"] = ""  # the var is dropped: cleared on the user
            if i % 4 == 2:
                row["groups"], row["city"] = "B", "Paris"
            rows.append(row)
        rows += [{"id": str(i), "email": f"u{i}@crash.example.com", "plan": "new", "city": "",
                  "groups": "C"} for i in range(self.rows, self.rows + max(self.rows // 10, 1))]
        return rows

    def v3(self) -> list[dict[str, str]]:
        """The version after: what v2 created or renamed goes, what it added is dropped.

        The run after the stopped one syncs this version: a write the stopped run made and
        did not record (a user created, a var set, an email changed) is undone only if the
        state learned of it; without that, the row is back to what the state remembers.
        """
        rows = []
        for row in self.v2():
            i = int(row["id"])
            if i >= self.rows or i % 7 == 3:
                continue
            if i % 4 == 2:
                row = {**row, "city": ""}
            rows.append(row)
        return rows

    def events(self) -> list[dict[str, str]]:
        """Events for users of v2 still in v3, each with its own id (a re-send would show
        twice)."""
        users = self.v3()
        return [{"id": f"e{k}", "email": users[(k * 3) % len(users)]["email"],
                 "event": "crashed", "rid": f"e{k}"} for k in range(max(self.rows // 4, 2))]

    def expected_users(self) -> dict[str, tuple[dict[str, str], list[str]]]:
        """What Sailthru must hold after v3: by email, the vars and lists of each live row."""
        return {row["email"]: ({k: v for k, v in row.items()
                                if k in ("plan", "city") and v != ""},
                               sorted(row["groups"].split(";")))
                for row in self.v3()}

    def write(self) -> dict[str, list[str]]:
        """Write the model files; the sync arguments of each stage, in order."""
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_csv(self.folder / "v1.csv", self.v1())
        _write_csv(self.folder / "people.csv", self.v2())
        _write_csv(self.folder / "v3.csv", self.v3())
        (self.folder / "events.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in self.events()), encoding="utf-8")
        common = ["--concurrency", "1", "--bulk", "never", "--no-progress"]
        # The history's deletes are meant: the mass-delete guard is not what is tested here.
        users = ["--name", "people", "--delete-behavior", "delete", "--max-delete", "100%",
                 *common]
        return {"v1": ["sync", str(self.folder / "v1.csv"), *users],
                "users": ["sync", str(self.folder / "people.csv"), *users],
                "v3": ["sync", str(self.folder / "v3.csv"), *users],
                "events": ["sync", str(self.folder / "events.jsonl"), "--object", "events",
                           *common]}


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _env(fake: FakeSailthru) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
    env.update(SAILTHRU_API_KEY=KEY, SAILTHRU_API_SECRET=SECRET, SAILTHRU_API_URL=fake.url)
    return env


class _Killer:
    """Stops the process running at the ``at``-th call the fake answers after :meth:`arm`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.at = 0
        self.pid = 0
        self.signum = signal.SIGKILL
        self.fired = False

    def arm(self, at: int, signum: int) -> None:
        with self.lock:
            self.calls, self.at, self.signum, self.fired = 0, at, signum, False

    def after_call(self) -> None:
        with self.lock:
            self.calls += 1
            if self.at and self.calls == self.at and self.pid and not self.fired:
                self.fired = True
                os.kill(self.pid, self.signum)  # applied, the reply not yet sent


_KILLERS: dict[int, _Killer] = {}  # by id of the fake's state
_PATCH = threading.Lock()
_PATCHED = 0


@contextmanager
def _killing(fake: FakeSailthru) -> Iterator[_Killer]:
    """Route every call of ``fake`` through a killer (other fakes are left alone)."""
    global _PATCHED
    killer = _Killer()
    state = fake._state  # the route handlers are given the fake's state: it names the fake
    with _PATCH:
        if _PATCHED == 0:
            saved = dict(fake_app.ROUTES)
            for route, handler in saved.items():
                fake_app.ROUTES[route] = _wrapped(handler)
            _wrapped.saved = saved  # type: ignore[attr-defined]
        _PATCHED += 1
        _KILLERS[id(state)] = killer
    try:
        yield killer
    finally:
        with _PATCH:
            del _KILLERS[id(state)]
            _PATCHED -= 1
            if _PATCHED == 0:
                fake_app.ROUTES.clear()
                fake_app.ROUTES.update(_wrapped.saved)  # type: ignore[attr-defined]


def _wrapped(handler: fake_app.Handler) -> fake_app.Handler:
    def counted(state: Any, payload: Any, form: Any) -> tuple[int, dict[str, Any]]:
        try:
            return handler(state, payload, form)
        finally:
            killer = _KILLERS.get(id(state))
            if killer is not None:
                killer.after_call()

    return counted


@dataclass
class Outcome:
    """One history stopped at call ``at`` by ``signum``: where, and what was wrong after."""

    at: int
    signum: int
    stopped_in: str | None = None
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)
    doubled_events: int = 0
    users_left: int = 0
    wrong_users: int = 0
    missing_users: int = 0


def _sync(cwd: Path, fake: FakeSailthru, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], cwd=cwd, env=_env(fake), capture_output=True,
                          text=True, timeout=_TIMEOUT, check=False)


def calls_in_a_clean_run(root: Path, rows: int) -> int:
    """How many calls the stopped stages (v2 and the events) make when nothing stops them."""
    history = History(root / "clean", rows)
    stages = history.write()
    with FakeSailthru(api_key=KEY, api_secret=SECRET, rate_limits=LIMITS) as fake:
        assert _sync(history.folder, fake, stages["v1"]).returncode == 0
        before = sum(fake.calls.values())
        for stage in ("users", "events"):
            result = _sync(history.folder, fake, stages[stage])
            assert result.returncode == 0, result.stdout + result.stderr
        calls = sum(fake.calls.values()) - before
        for stage in ("v3", "events"):
            assert _sync(history.folder, fake, stages[stage]).returncode == 0
        problems = _check(history, fake, set(), Outcome(0, 0))
        assert not problems.problems, problems.problems
        return calls


def stop_and_resume(root: Path, rows: int, at: int, signum: int) -> Outcome:
    """Stop the history's v2 and events syncs at their ``at``-th call, resume, and check."""
    outcome = Outcome(at, signum)
    history = History(root / f"{signal.Signals(signum).name}-{at}", rows)
    stages = history.write()
    with FakeSailthru(api_key=KEY, api_secret=SECRET, rate_limits=LIMITS) as fake, \
            _killing(fake) as killer:
        first = _sync(history.folder, fake, stages["v1"])
        if first.returncode != 0:
            outcome.problems.append(f"v1 failed: {first.stderr[-500:]}")
            return outcome
        killer.arm(at, signum)
        for stage in ("users", "events"):
            process = subprocess.Popen([*COMMAND, *stages[stage]], cwd=history.folder,
                                       env=_env(fake), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            killer.pid = process.pid
            _, stderr = process.communicate(timeout=_TIMEOUT)
            killer.pid = 0
            if killer.fired:
                outcome.stopped_in, outcome.exit_code = stage, process.returncode
                if signum != signal.SIGKILL and "Traceback" in stderr:
                    outcome.problems.append(f"{stage}: a traceback on {signum}: {stderr[-800:]}")
                break
            if process.returncode != 0:
                outcome.problems.append(f"{stage} exited {process.returncode}: {stderr[-500:]}")
                return outcome
        killer.arm(0, signum)
        unknown: set[str] = set()
        for stage in ("v3", "events"):
            result = _sync(history.folder, fake, stages[stage])
            errors = _errors(history.folder, result)
            for error in errors:
                # An event in flight at the stop is never sent again: it is reported, as
                # pending (SIGKILL) or unknown (an interrupted send), for reconciliation.
                if stage == "events" and ("will not be sent again" in error["reason"]
                                          or "pending" in error["reason"]
                                          or "is marked 'unknown'" in error["reason"]):
                    unknown.add(str(error["record"]))  # reported for reconciliation
                else:
                    outcome.problems.append(f"{stage} resumed: unexpected failure {error}")
        _check(history, fake, unknown, outcome)
    return outcome


def _errors(cwd: Path, result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    line = next((x for x in result.stdout.splitlines() if x.startswith("Report: ")), None)
    if line is None:
        return [{"record": "(run)", "reason": f"exit {result.returncode}: {result.stderr[-500:]}"}]
    path = cwd / line.removeprefix("Report: ") / "errors.jsonl"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(x) for x in text.splitlines()]


def _check(history: History, fake: FakeSailthru, unknown: set[str], outcome: Outcome) -> Outcome:
    """Compare the fake with the model; count what is wrong into ``outcome``."""
    expected = history.expected_users()
    users = {u["keys"]["email"]: (u["vars"], sorted(u["lists"])) for u in fake.users.values()}
    left = sorted(set(users) - set(expected))
    missing = sorted(set(expected) - set(users))
    wrong = sorted(e for e in set(users) & set(expected) if users[e] != expected[e])
    outcome.users_left, outcome.missing_users, outcome.wrong_users = (
        len(left), len(missing), len(wrong))
    if left:
        outcome.problems.append(f"users that should be gone: {left}")
    if missing:
        outcome.problems.append(f"users missing: {missing}")
    if wrong:
        outcome.problems.append(
            f"users unlike their rows: {[(e, users[e], expected[e]) for e in wrong[:3]]}")
    posted = Counter(str(e["vars"].get("rid")) for e in fake.events)
    twice = sorted(k for k, n in posted.items() if n > 1)
    outcome.doubled_events = len(twice)
    if twice:
        outcome.problems.append(f"events posted twice: {twice}")
    wanted = {e["id"] for e in history.events()}
    lost = wanted - set(posted) - unknown
    if lost:
        outcome.problems.append(f"events neither posted nor reported: {sorted(lost)}")
    return outcome
