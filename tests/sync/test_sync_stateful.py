"""Random model histories synced through faults and crashes end as the reference says.

A hypothesis state machine edits a users model and appends events and purchases. Its rules
are derived from the row contract (:data:`sailthru_destination.shaping.row_contract.ROW_CONTRACT`):
every field a row can carry has rules that change it (:data:`RULES`), and the test refuses
to start when a field has none. So it adds a row; changes its vars (typed dates among them)
and groups; its opt-out level (every transition, and an empty cell); its email (to a new
one, to one used before, to another row's in any case; re-created under a new key); its
deleted flag (true, false and every spelling of "nothing": ``NULL``, ``\\N``, ``None``,
``''``, ``null``, ``off``, ``0.0``); and removes it. Between runs it injects the fake's
faults (dropped connections, 5xx before or after applying, false-200 deletes, stale
reads), kills runs at a random API call, and starts two runs of one model at once (none
may crash). After every complete run with no fault it checks, for the delete behaviour of
the machine (nothing, clear, delete):

* the fake's users, vars, lists and opt-out levels are what
  :func:`stateful_model.expected_users` says, and the users of failed rows (a deleted flag
  that is neither yes nor no) are exactly as they were before the run;
* no event or purchase is in the fake twice, and each is either there or was reported;
* nothing is reported done that is not: no failure in that run, the state remembers
  exactly the live rows, each order or event it calls sent is in the fake, "deleted"
  counts the users that vanished and "created" at least the users that appeared and at
  most one per new email.

CI runs a small, derandomized budget. ``SAILTHRU_STATEFUL=bench`` (see bench/README.md)
selects the big budget with random seeds.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import shutil
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from stateful_model import (
    FLAG_FALSE,
    FLAG_NOTHING,
    FLAG_TRUE,
    ITEM,
    SHOP_DOMAIN,
    Model,
    Person,
    UserView,
    expected_users,
    user_sids,
    users_view,
)
from sync_world import (
    OBJECTS,
    ModelRun,
    SkippedTime,
    Target,
    answer_5xx_after_applying,
    make_fake,
    run_all,
    run_killed,
    run_together,
    scratch_folder,
    sent_keys,
)

from sailthru_destination.shaping.row_contract import ROW_CONTRACT
from sailthru_destination.testing import Faults

_COMMON = {"deadline": None, "suppress_health_check": list(HealthCheck)}
# CI: a fixed budget, the same examples every time (no flakes), no example database. It
# stops at the first failing history: shrinking these costs minutes per behaviour, so it is
# on only when asked (SAILTHRU_STATEFUL_SHRINK=1) and in the bench profile.
_SHRINK = os.environ.get("SAILTHRU_STATEFUL_SHRINK") == "1"
settings.register_profile(
    "ci", max_examples=40, stateful_step_count=30, derandomize=True, database=None,
    phases=list(Phase) if _SHRINK else [Phase.explicit, Phase.generate],
    **_COMMON)  # type: ignore[arg-type]
# bench/stateful.py: a big budget with random seeds, shrinking on.
settings.register_profile(
    "bench", max_examples=int(os.environ.get("SAILTHRU_STATEFUL_EXAMPLES", "1000")),
    stateful_step_count=int(os.environ.get("SAILTHRU_STATEFUL_STEPS", "50")),
    **_COMMON)  # type: ignore[arg-type]
PROFILE = settings.get_profile(os.environ.get("SAILTHRU_STATEFUL", "ci"))
# One thread per run keeps every example reproducible; more threads explore interleavings,
# but then hypothesis may see an example behave differently twice (it says "Flaky").
THREADS = int(os.environ.get("SAILTHRU_STATEFUL_THREADS", "1"))

NAMES = ("ann", "bob", "cy", "dee")
props = st.dictionaries(
    st.sampled_from(("plan", "score", "city", "renew_date")),
    st.sampled_from(("gold", "free", "Lyon")) | st.integers(0, 3)
    | st.sampled_from((datetime.date(2026, 1, 2), datetime.date(2027, 3, 4))),
    max_size=3).map(lambda d: tuple(sorted(d.items())))
levels = st.sampled_from(("none", "all", "basic", "blast", ""))
flags = st.sampled_from(FLAG_TRUE + FLAG_FALSE + FLAG_NOTHING)
groups = st.frozensets(st.sampled_from(("A", "B", "C")), max_size=3)
cases = st.sampled_from((str.lower, str.upper, str.title))
pick = st.integers(0, 1_000)
faults = st.builds(
    Faults,
    connection_error_rate=st.sampled_from((0.0, 0.1, 0.3)),
    server_error_rate=st.sampled_from((0.0, 0.1, 0.3)),
    false_ok_delete_rate=st.sampled_from((0.0, 0.3, 0.9)),
    # Reads this soon after a write are stale; any wait (0.5 s or more) outlasts it.
    stale_read_window=st.sampled_from((0.0, 0.4)),
)


class SyncMachine(RuleBasedStateMachine):
    """A model history synced through faults and crashes; ``behavior`` is set by subclasses."""

    behavior = "nothing"

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.folder = scratch_folder()
        self.fake = make_fake().start()
        self.after_apply = 0.0
        self.rng = random.Random(0)
        self.clock = SkippedTime()
        self.patches = contextlib.ExitStack()
        self.patches.enter_context(answer_5xx_after_applying(lambda: self.after_apply, self.rng))
        self.patches.enter_context(self.clock.driving_the_fake())
        self.settings: dict[str, Any] = {"delete_behavior": self.behavior, "concurrency": 1,
                                         "optout_column": "optout", "deleted_column": "deleted"}
        self.target = Target(self.fake.url, self.folder, self.settings, self.clock)
        self.reported: dict[str, set[str]] = {obj: set() for obj in OBJECTS}
        self.dirty = False  # a crash or a failed record since the last clean run

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is None:  # the history ran to its end: check where it left us
                self.check()
        finally:
            self.patches.close()
            self.fake.stop()
            shutil.rmtree(self.folder, ignore_errors=True)

    @initialize(seed=st.integers(0, 2**32 - 1), bulk=st.sampled_from(("never", "always")),
                concurrency=st.integers(1, THREADS))
    def configure(self, seed: int, bulk: str, concurrency: int) -> None:
        self.rng.seed(seed)
        self.settings.update(bulk=bulk, concurrency=concurrency)

    # -- the model ----------------------------------------------------------------------------

    def _pk(self, index: int) -> str:
        keys = sorted(self.model.people)
        return keys[index % len(keys)]

    @rule(name=st.sampled_from(NAMES), properties=props, member_of=groups, level=levels)
    def add_row(self, name: str, properties: Any, member_of: frozenset[str], level: str) -> None:
        email = self.model.new_email(name)
        self.model.put(self.model.new_key(), Person(email, properties, member_of, level))

    @precondition(lambda self: self.model.people)
    @rule(index=pick, properties=props, member_of=groups)
    def change_row(self, index: int, properties: Any, member_of: frozenset[str]) -> None:
        pk = self._pk(index)
        self.model.put(pk, self.model.people[pk].but(props=properties, groups=member_of))

    @precondition(lambda self: self.model.people)
    @rule(index=pick, level=levels)
    def change_optout(self, index: int, level: str) -> None:
        pk = self._pk(index)
        self.model.put(pk, self.model.people[pk].but(optout=level))

    @precondition(lambda self: self.model.people)
    @rule(index=pick, spelling=flags)
    def flag_row(self, index: int, spelling: str) -> None:
        pk = self._pk(index)
        if spelling in FLAG_TRUE:
            self.model.mark_deleted(pk, spelling)
        else:
            self.model.put(pk, self.model.people[pk].but(flag=spelling))

    @precondition(lambda self: self.model.flagged)
    @rule(index=pick, spelling=st.sampled_from(FLAG_FALSE))
    def unflag_row(self, index: int, spelling: str) -> None:
        keys = sorted(self.model.flagged)
        pk = keys[index % len(keys)]
        self.model.put(pk, self.model.flagged[pk].but(flag=spelling))

    @precondition(lambda self: self.model.people)
    @rule(index=pick, name=st.sampled_from(NAMES), reuse=st.booleans(), other=pick, case=cases)
    def change_email(self, index: int, name: str, reuse: bool, other: int, case: Any) -> None:
        pk = self._pk(index)
        if reuse:  # an email the model used before, maybe by a row since removed
            used = sorted(self.model.ever)
            email = case(used[other % len(used)])
        else:
            email = self.model.new_email(name)
        self.model.put(pk, self.model.people[pk].but(email=email))

    @precondition(lambda self: self.model.people)
    @rule(index=pick, properties=props, member_of=groups)
    def recreate_row(self, index: int, properties: Any, member_of: frozenset[str]) -> None:
        pk = self._pk(index)
        email = self.model.people[pk].email
        self.model.remove(pk)
        self.model.put(self.model.new_key(), Person(email, properties, member_of))

    @precondition(lambda self: len(self.model.people) >= 2)
    @rule(index=pick, other=pick, case=cases)
    def share_email(self, index: int, other: int, case: Any) -> None:
        pk, owner = self._pk(index), self._pk(other)
        if pk == owner:
            owner = self._pk(other + 1)
        email = case(self.model.people[owner].email)
        self.model.put(pk, self.model.people[pk].but(email=email))

    @precondition(lambda self: self.model.people)
    @rule(index=pick)
    def remove_row(self, index: int) -> None:
        self.model.remove(self._pk(index))

    @rule(buyer=st.integers(0, 3))
    def add_event(self, buyer: int) -> None:
        key = f"e{len(self.model.events)}"
        self.model.events.append({"id": key, "email": f"b{buyer}@{SHOP_DOMAIN}",
                                  "event": "viewed", "rid": key})

    @rule(buyer=st.integers(0, 3))
    def add_purchase(self, buyer: int) -> None:
        key = f"o{len(self.model.purchases)}"
        self.model.purchases.append({"id": key, "order_id": key,
                                     "email": f"b{buyer}@{SHOP_DOMAIN}", "items": [ITEM]})

    # -- runs ---------------------------------------------------------------------------------

    @rule(chosen=faults, after_apply=st.sampled_from((0.0, 0.2, 0.5)))
    def inject_faults(self, chosen: Faults, after_apply: float) -> None:
        self.fake.faults = chosen
        self.after_apply = after_apply

    def _run_all(self) -> dict[str, ModelRun]:
        runs = run_all(self.target, self.model.rows())
        for obj, run in runs.items():
            self.reported[obj] |= {f.record for f in run.failures}
        if any(run.failures for run in runs.values()):
            self.dirty = True
        return runs

    @rule()
    def run(self) -> None:
        self._run_all()

    @rule(kill_after=st.integers(1, 60))
    def interrupted_run(self, kill_after: int) -> None:
        run_killed(self.target, self.model.rows(), kill_after)
        self.dirty = True  # killed or not, what the child reported is lost with it

    @rule()
    def two_runs_at_once(self) -> None:
        crashes = run_together(self.target, self.model.rows())
        # The second run may wait for the first or stop at once naming it; never crash.
        crashes = [c for c in crashes if "another sync" not in c]
        assert not crashes, f"two runs of one model at once crashed:\n{crashes[0]}"
        self.dirty = True  # each may report the other's sends as pending: not failures

    @rule()
    def check(self) -> None:
        """A complete run with no fault, then every invariant."""
        self.fake.faults = Faults()
        self.after_apply = 0.0
        # After a crash or a failed record, Sailthru may hold what the state does not know
        # (a user created, a delete done, reply lost): then counts cannot be compared.
        counts_hold = not self.dirty
        before = user_sids(self.fake.users)
        views_before = users_view(self.fake.users)
        known = _applied_users(self.folder)
        unsettled = {obj: {k for k, s in sent_keys(self.folder, obj).items() if s != "sent"}
                     for obj in ("events", "purchases")}
        runs = self._run_all()
        after = self.fake.users
        self._check_users(runs["users"], before, after, known if counts_hold else None,
                          views_before)
        for obj, posted in (("events", self._posted_events()),
                            ("purchases", self._posted_orders())):
            self._check_activity(obj, runs.get(obj), posted, unsettled)
        self.dirty = False

    # -- the invariants -----------------------------------------------------------------------

    def _check_users(self, run: ModelRun, before: set[str], fake_users: dict[str, Any],
                     known: dict[str, str | None] | None,
                     views_before: dict[str, UserView]) -> None:
        users = users_view(fake_users)
        expected = expected_users(self.model, self.behavior)
        # Two live rows on one user: one keeps it, the other is reported (a duplicate user,
        # as Hightouch reports duplicate keys) and is not synced; nothing else may fail but
        # the rows whose deleted flag is neither yes nor no (each names the column).
        by_email: dict[str, list[str]] = {}
        failing = {pk for pk, p in self.model.people.items() if p.failing}
        for pk, person in self.model.people.items():
            if pk not in failing:
                by_email.setdefault(person.email.lower(), []).append(pk)
        shared = {pk for pks in by_email.values() if len(pks) > 1 for pk in pks}
        losers = {f.record for f in run.failures if f.reason.startswith("duplicate email")}
        flagged = {f.record for f in run.failures if f.field == "deleted"}
        assert flagged == failing, f"rows failed for their flag {flagged}, wanted {failing}"
        others = [f for f in run.failures
                  if not f.reason.startswith("duplicate email") and f.field != "deleted"]
        assert others == [], f"failures in a run with no fault: {others}"
        assert losers <= shared, f"duplicates reported for rows that share no email: {losers}"
        assert len(losers) == sum(len(pks) - 1 for pks in by_email.values()), \
            f"one row per shared user keeps it: {losers} of {by_email}"
        missing = expected.present - set(users)
        assert not missing, f"users of live rows missing from Sailthru: {sorted(missing)}"
        extra = set(users) - expected.allowed
        assert not extra, f"users Sailthru should not hold ({self.behavior}): {sorted(extra)}"
        wrong = {e: (users[e], view) for e, view in expected.exact.items()
                 if (users[e].vars, users[e].lists) != (view.vars, view.lists)
                 or users[e].optout not in expected.optouts[e]}
        assert not wrong, (f"users that differ from their row (got, wanted; opt-out one of "
                           f"{expected.optouts}): {wrong}")
        touched = {e: (views_before.get(e), users.get(e)) for e in expected.untouched
                   if views_before.get(e) != users.get(e)}
        assert not touched, f"users of failed rows changed by the run (before, after): {touched}"
        dirty = {e: users[e] for e in expected.blank & set(users) if users[e].vars or
                 users[e].lists}
        assert not dirty, f"cleared users that still hold vars or lists: {dirty}"
        # A row that lost its user to a duplicate keeps its own earlier record, if it had one.
        live = set(self.model.people)
        applied = _applied_users(self.folder)
        assert live - losers - failing <= set(applied), "the state forgot live rows"
        # A gone row whose user a live row maps to (one that fails, say) waits in the state
        # for that row to take its values over; any other gone row is forgotten.
        emails = {p.email.lower() for p in self.model.people.values()}
        waiting = {pk for pk, key in applied.items() if pk not in live and key in emails}
        assert set(applied) - live <= waiting, "the state remembers rows that are gone"
        if known is not None:
            counts = run.summary.counts
            sids = user_sids(fake_users)
            created, vanished = sids - before, before - sids
            # "created" is a row's first export: at least every user that appeared, at most
            # one per email among the new rows (two rows on one email create one user) and
            # the rows that moved (one leaving a shared user starts a user of its own).
            new_emails = {p.email.lower() for pk, p in self.model.people.items()
                          if known.get(pk) != p.email.lower()}
            assert len(created) <= counts["created"], f"created {dict(counts)} vs {created}"
            assert counts["created"] <= len(new_emails), \
                f"created {dict(counts)} for new emails {new_emails}"
            # A row marked deleted that this state never synced gets the delete behaviour
            # with its own values (another state may have synced it): "deleted" though
            # its user may never have been there.
            unsynced = {pk for pk in self.model.flagged if pk not in known}
            assert len(vanished) <= counts["deleted"] <= len(vanished) + len(unsynced), \
                f"deleted {dict(counts)} vs {vanished}"

    def _posted_events(self) -> Counter[str]:
        return Counter(str(e["vars"].get("rid")) for e in self.fake.events)

    def _posted_orders(self) -> Counter[str]:
        return Counter(str(p["purchase_keys"].get("extid")) for p in self.fake.purchases)

    def _check_activity(self, obj: str, run: ModelRun | None, posted: Counter[str],
                        unsettled: dict[str, set[str]]) -> None:
        rows = self.model.events if obj == "events" else self.model.purchases
        keys = {str(r["id"]) for r in rows}
        twice = sorted(k for k, n in posted.items() if n > 1)
        assert not twice, f"{obj} posted twice: {twice}"
        assert set(posted) <= keys, f"{obj} posted that the model never had"
        lost = keys - set(posted) - self.reported[obj]
        assert not lost, f"{obj} neither in Sailthru nor reported: {sorted(lost)}"
        said_sent = {k for k, state in sent_keys(self.folder, obj).items() if state == "sent"}
        assert said_sent <= set(posted), f"{obj} recorded sent, not in Sailthru"
        # Only a send left pending or unknown by an earlier run may fail again, as a report.
        failures = run.failures if run is not None else []
        unexplained = {f.record for f in failures} - unsettled[obj]
        assert not unexplained, f"{obj} failed in a run with no fault: {failures}"


def _applied_users(folder: Path) -> dict[str, str | None]:
    """The users state's applied rows: primary key -> the user key it was applied to."""
    path = folder / "users.db"
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {str(pk): key for pk, key in db.execute("SELECT pk, key FROM records")}


RULES: dict[str, tuple[str, ...]] = {
    "key": ("add_row", "change_email", "share_email", "recreate_row"),
    "vars": ("add_row", "change_row"),
    "lists": ("add_row", "change_row"),
    "optout": ("add_row", "change_optout"),
    "deleted": ("flag_row", "unflag_row", "remove_row"),
}
"""The rules that change each field of the row contract: a new field needs its own."""


def _check_alphabet() -> None:
    """Refuse to run with a row contract field no rule generates (or a rule that is gone)."""
    fields = {f.name for f in ROW_CONTRACT}
    missing = fields - set(RULES)
    assert not missing, f"the model test generates no change of {sorted(missing)}: add rules"
    unknown = [name for names in RULES.values() for name in names
               if not callable(getattr(SyncMachine, name, None))]
    assert not unknown, f"RULES names rules that do not exist: {unknown}"


_check_alphabet()


def _machine(behavior: str) -> Any:
    machine: type[SyncMachine] = type(
        f"Sync{behavior.title()}Machine", (SyncMachine,), {"behavior": behavior})
    case = machine.TestCase
    case.settings = PROFILE
    return case


TestSyncDeleteNothing = _machine("nothing")
TestSyncDeleteClear = _machine("clear")
TestSyncDeleteDelete = _machine("delete")
