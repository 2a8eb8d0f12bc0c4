"""The fake's world: users, lists and recorded calls behind one lock, plus its settings.

Every endpoint module reads and changes this under ``State.lock``; inspection copies out of it.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from ._faults import Faults
from ._inferred import Inferred

__all__ = ["INDEXED_KEYS", "State", "rfc2822_now"]

# User keys other than the sid that can find a user (the sid is the key of State.users).
INDEXED_KEYS = ("email", "extid", "cookie", "sms")

User = dict[str, Any]


def _monotonic() -> float:
    # Looked up at each call, so a test that replaces this module's ``time`` moves it.
    return time.monotonic()


def rfc2822_now() -> str:
    """The current time as Sailthru writes dates (RFC 2822)."""
    return format_datetime(datetime.now(timezone.utc))


class State:
    """Everything the fake remembers, with the settings that change how it answers."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        faults: Faults,
        seed: int,
        extid_lookup: bool,
        forbidden_endpoints: frozenset[str],
    ) -> None:
        self.lock = threading.RLock()
        self.api_key = api_key
        self.api_secret = api_secret
        self.faults = faults
        self.seed = seed
        self.extid_lookup = extid_lookup
        self.forbidden_endpoints = forbidden_endpoints
        self.base_url = ""
        self.latency = 0.0
        self.connect_latency = 0.0
        # Jobs: run job_seconds after their POST (0: inside it), then completed on the
        # job_polls-th GET (0: at once; None: never), or "error".
        self.job_polls: int | None = 1
        self.job_seconds = 0.0
        # The fake's own time (monotonic seconds): read lags and job delays are measured
        # on it, so a test can move it on instead of sleeping.
        self.clock: Callable[[], float] = _monotonic
        self.job_fails = False
        # Exports expired the moment they complete (GET /job says expired, the file 404s).
        self.exports_expire = False
        self.inferred = Inferred()
        self.clear()

    def clear(self) -> None:
        """Forget all users, lists and records, and restart the random stream from the seed."""
        with self.lock:
            self.rng = random.Random(self.seed)
            self.users: dict[str, User] = {}
            self.index: dict[str, dict[str, str]] = {name: {} for name in INDEXED_KEYS}
            self.lists: list[dict[str, Any]] = []
            self.list_members: dict[str, set[str]] = {}  # list_id -> sids on it now
            self.list_ever: dict[str, set[str]] = {}  # list_id -> sids ever on it
            # (key, value) -> (time of the write plus its random extra lag, what a GET sees
            # until stale_read_window has passed since then)
            self.stale: dict[tuple[str, str], tuple[float, User | None]] = {}
            self.events: list[dict[str, Any]] = []
            self.purchases: list[dict[str, Any]] = []
            self.returns: list[dict[str, Any]] = []
            self.pageviews: list[dict[str, Any]] = []
            self.sends: dict[str, dict[str, Any]] = {}  # send_id -> send
            self.blasts: dict[str, dict[str, Any]] = {}  # blast_id -> blast
            self.jobs: dict[str, dict[str, Any]] = {}
            self.exports: dict[str, dict[str, Any]] = {}  # token -> {"csv", "expired"}
            self.calls: Counter[tuple[str, str]] = Counter()
            self.call_times: list[tuple[float, str, str]] = []
            self.connections = 0

    # -- randomness (deterministic under the seed) --------------------------------------------

    def chance(self, rate: float) -> bool:
        """True with probability ``rate``, drawn from the seeded stream."""
        if rate <= 0:
            return False
        with self.lock:
            return self.rng.random() < rate

    def new_id(self) -> str:
        """A new Sailthru-style id: 24 lowercase hex characters."""
        with self.lock:
            return f"{self.rng.getrandbits(96):024x}"

    # -- users ----------------------------------------------------------------------------------

    def find_sid(self, key: str, value: str) -> str | None:
        """The sid of the user whose ``key`` is ``value`` (emails compared lower-cased)."""
        if key == "sid":
            return value if value in self.users else None
        if key == "email":
            value = value.lower()
        return self.index.get(key, {}).get(value)

    def create_user(self) -> User:
        """A new empty profile with a fresh sid and cookie."""
        sid = self.new_id()
        user: User = {
            "keys": {"sid": sid, "cookie": self.new_id() + self.new_id()[:8]},
            "vars": {},
            "lists": {},
            "optout_email": "none",
            "purchase_incomplete": None,
            "purchases": [],
            "create_time": rfc2822_now(),
        }
        self.users[sid] = user
        self.index["cookie"][user["keys"]["cookie"]] = sid
        return user

    def set_key(self, user: User, key: str, value: str | None) -> None:
        """Give ``user`` this key (email lower-cased), keeping the lookup indexes right."""
        keys = user["keys"]
        old = keys.get(key)
        if old is not None:
            self.index[key].pop(old, None)
        if value is None or value == "":
            keys.pop(key, None)
            return
        if key == "email":
            value = value.lower()
        keys[key] = value
        self.index[key][value] = keys["sid"]

    def delete_user(self, sid: str) -> None:
        """Remove a profile. Lists keep counting it in ``email_count`` (as Sailthru does)."""
        user = self.users.pop(sid)
        for key in INDEXED_KEYS:
            value = user["keys"].get(key)
            if value is not None and self.index[key].get(value) == sid:
                del self.index[key][value]
        for members in self.list_members.values():
            members.discard(sid)

    def snapshot(self, sid: str | None) -> User | None:
        """A deep copy of a user, or None."""
        if sid is None or sid not in self.users:
            return None
        return copy.deepcopy(self.users[sid])

    # -- lists ----------------------------------------------------------------------------------

    def find_list(self, name: str) -> dict[str, Any] | None:
        """The first list record with this name (duplicates are addressed by their first)."""
        for record in self.lists:
            if record["name"] == name:
                return record
        return None

    def create_list(self, name: str, list_type: str = "normal") -> dict[str, Any]:
        """Append a new list record, even if one with this name exists (that is the race)."""
        record: dict[str, Any] = {
            "list_id": self.new_id(),
            "name": name,
            "type": list_type,
            "primary": False,
            "create_time": rfc2822_now(),
            "send_time": None,
            "vars": {},
            "query": None,
        }
        self.lists.append(record)
        self.list_members[record["list_id"]] = set()
        self.list_ever[record["list_id"]] = set()
        return record

    def list_view(self, record: dict[str, Any]) -> dict[str, Any]:
        """A list record with its counts: ``email_count`` is everyone ever on it."""
        view = copy.deepcopy(record)
        view["email_count"] = len(self.list_ever[record["list_id"]])
        view["valid_count"] = len(self.list_members[record["list_id"]])
        return view

    def join_list(self, user: User, record: dict[str, Any]) -> None:
        """Put ``user`` on the list (signup date kept if already there)."""
        sid = user["keys"]["sid"]
        user["lists"].setdefault(record["name"], rfc2822_now())
        self.list_members[record["list_id"]].add(sid)
        self.list_ever[record["list_id"]].add(sid)

    def leave_list(self, user: User, name: str) -> None:
        """Take ``user`` off every list record with this name."""
        sid = user["keys"]["sid"]
        user["lists"].pop(name, None)
        for record in self.lists:
            if record["name"] == name:
                self.list_members[record["list_id"]].discard(sid)

    def delete_list(self, record: dict[str, Any]) -> None:
        """Remove one list record; its members leave it unless a duplicate of the name remains."""
        self.lists.remove(record)
        members = self.list_members.pop(record["list_id"])
        self.list_ever.pop(record["list_id"])
        survivor = self.find_list(record["name"])
        for sid in members:
            user = self.users.get(sid)
            if user is None:
                continue
            if survivor is None:
                user["lists"].pop(record["name"], None)
            else:
                self.join_list(user, survivor)

    # -- eventual consistency --------------------------------------------------------------------

    def remember_before_post(self, lookups: list[tuple[str, str]], before: User | None) -> None:
        """Record what a GET by any of ``lookups`` sees until the stale-read window passes."""
        faults = self.faults
        if faults.stale_read_window <= 0 and faults.stale_read_jitter <= 0:
            return
        with self.lock:
            extra = self.rng.uniform(0.0, faults.stale_read_jitter)
        at = self.clock() + extra
        for lookup in lookups:
            self.stale[lookup] = (at, before)

    def stale_view(self, key: str, value: str) -> tuple[bool, User | None]:
        """(True, old user or None) when a GET by this key must still see the pre-POST user."""
        entry = self.stale.get((key, value.lower() if key == "email" else value))
        if entry is None:
            return False, None
        at, before = entry
        if self.clock() - at >= self.faults.stale_read_window:
            return False, None
        return True, before
