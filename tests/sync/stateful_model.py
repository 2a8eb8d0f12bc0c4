"""The model the stateful sync test drives, and what Sailthru must hold for it (the reference).

A model is rows keyed by a primary key, each an email, some properties and some groups;
plus append-only events and purchases. Beside the live rows the model keeps the little
history the reference needs: every email ever used, which keys ever claimed each email,
and the emails a row moved away from.

Rules of the reference (``expected_users``), for a run that completed with no fault:

* every email of a live row (compared lower-cased: Sailthru lower-cases emails) is a user;
* no user has an email the model never used; with ``delete`` no user has an email that
  no live row claims, except one a row moved away from (the user who already owned the
  new email wins, the old one is left: the documented email-change rule);
* an email only ever claimed by one primary key ("untainted") is exact: its user's vars
  are the row's properties (the email itself is a key, not a var) and its lists are the
  row's groups; with ``clear``, an untainted email no live row claims is a user with no
  vars and no lists, or no user at all.

An email claimed by two keys over its history (two rows sharing it, a row re-created
under a new key, a row moving onto it) may keep vars and lists another row wrote: that
is Sailthru's one-user-per-email, not a defect, so only its existence is checked.

A row carries every field of the row contract (:mod:`sailthru_destination.shaping.row_contract`),
and :meth:`Person.row` writes one column per field. Beyond vars and lists:

* opt-out: an exact user's ``optout_email`` is the row's level; with an empty cell (which
  leaves Sailthru's level alone) it is ``none`` or a level the row had before;
* the deleted flag: a true spelling marks the row deleted (for the reference, the row is
  gone, though it stays in the file); a false spelling is a live row; any other spelling
  (``NULL``, ``\\N``, ``None``, ``null``, ``off``, ``0.0``) is a failed record whose user
  the run must not touch: :attr:`Expected.untouched` lists them.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sailthru_destination.shaping.row_contract import ROW_CONTRACT
from sailthru_destination.sync.warehouse.sources import Row

USER_DOMAIN = "model.example.com"
SHOP_DOMAIN = "shop.example.com"
ITEM = {"id": "sku", "title": "Sock", "qty": 1, "price": 2.5, "url": "https://shop.example.com/s"}
# The deleted flag's spellings: what deletes, what keeps, and every way of writing "nothing"
# a warehouse or a file produces (each fails its row).
FLAG_TRUE = ("true", "1", "yes", " TRUE ")
FLAG_FALSE = ("", "false", "0", "no")
FLAG_NOTHING = ("NULL", "\\N", "None", "null", "off", "0.0")
# The model's column of each contract field that has a column of its own (vars are the rest).
COLUMNS = {"key": "email", "lists": "groups", "optout": "optout", "deleted": "deleted"}


@dataclass(frozen=True)
class Person:
    """One row of the users model: a value for each field of the row contract."""

    email: str
    props: tuple[tuple[str, Any], ...]
    groups: frozenset[str]
    optout: str = ""
    flag: str = ""

    @property
    def failing(self) -> bool:
        """Whether the deleted flag is neither yes nor no: the row is a failed record."""
        return self.flag not in FLAG_FALSE + FLAG_TRUE

    def row(self, pk: str) -> dict[str, Any]:
        """The row as the model file would hold it: one column per contract field."""
        values = {"key": self.email, "vars": dict(self.props), "lists": sorted(self.groups),
                  "optout": self.optout, "deleted": self.flag}
        row: dict[str, Any] = {"id": pk}
        for contract_field in ROW_CONTRACT:
            value = values[contract_field.name]
            if contract_field.name in COLUMNS:
                row[COLUMNS[contract_field.name]] = value
            else:
                row.update(value)
        return row

    def but(self, **changes: Any) -> Person:
        """This row with ``changes``."""
        return dataclasses.replace(self, **changes)


def as_var(value: Any) -> Any:
    """What Sailthru holds for a property value (a ``_date`` var's date as ``YYYY-MM-DD``)."""
    return value.isoformat() if isinstance(value, datetime.date) else value


@dataclass
class Model:
    """The rows of the three models now, and the history the reference needs."""

    people: dict[str, Person] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    purchases: list[dict[str, Any]] = field(default_factory=list)
    ever: set[str] = field(default_factory=set)
    claimants: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    carried: set[str] = field(default_factory=set)  # emails that got another email's history
    vacated: set[str] = field(default_factory=set)
    flagged: dict[str, Person] = field(default_factory=dict)  # marked deleted, still in the file
    levels: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    next_key: int = 0
    next_email: int = 0

    def new_key(self) -> str:
        """A primary key never used before."""
        self.next_key += 1
        return f"p{self.next_key}"

    def new_email(self, name: str) -> str:
        """An email never used before (sharing one is a rule of its own)."""
        self.next_email += 1
        return f"{name}{self.next_email}@{USER_DOMAIN}"

    def put(self, pk: str, person: Person) -> None:
        """Add or change a row (an email change carries the old user's history along)."""
        old = self.people.get(pk)
        email = person.email.lower()
        if old is not None and old.email.lower() != email:
            self.vacated.add(old.email.lower())
            if self.tainted(old.email.lower()):
                self.carried.add(email)
        self.people[pk] = person
        self.flagged.pop(pk, None)
        self.ever.add(email)
        self.claimants[email].add(pk)
        if person.optout:
            self.levels[pk].add(person.optout)

    def remove(self, pk: str) -> None:
        """Drop a row from the model."""
        del self.people[pk]

    def mark_deleted(self, pk: str, spelling: str) -> None:
        """Mark a row deleted: gone for the reference, in the file with its flag."""
        self.flagged[pk] = self.people.pop(pk).but(flag=spelling)

    def tainted(self, email: str) -> bool:
        """Whether another key's vars or lists may legitimately linger on this email's user."""
        return len(self.claimants[email]) > 1 or email in self.carried

    def rows(self) -> dict[str, list[Row]]:
        """The three models as the runner reads them."""
        rows = [*self.people.items(), *self.flagged.items()]
        users = [Row(f"line {n}", p.row(pk)) for n, (pk, p) in enumerate(rows, 2)]
        events = [Row(f"line {n}", dict(e)) for n, e in enumerate(self.events, 2)]
        orders = [Row(f"line {n}", dict(o)) for n, o in enumerate(self.purchases, 2)]
        return {"users": users, "events": events, "purchases": orders}


@dataclass(frozen=True)
class UserView:
    """A user as the test compares it: vars, list names and opt-out level."""

    vars: dict[str, Any]
    lists: frozenset[str]
    optout: str = "none"


def users_view(fake_users: dict[str, dict[str, Any]]) -> dict[str, UserView]:
    """The fake's users of the users model (not the shop's buyers), by email."""
    found: dict[str, UserView] = {}
    for user in fake_users.values():
        email = str(user["keys"].get("email", ""))
        if email.endswith("@" + USER_DOMAIN):
            found[email] = UserView(dict(user["vars"]), frozenset(user["lists"]),
                                    str(user["optout_email"]))
    return found


def user_sids(fake_users: dict[str, dict[str, Any]]) -> set[str]:
    """The sids of the fake's users of the users model (not the shop's buyers)."""
    return {sid for sid, user in fake_users.items()
            if str(user["keys"].get("email", "")).endswith("@" + USER_DOMAIN)}


@dataclass(frozen=True)
class Expected:
    """What the users in Sailthru must be after a complete run with no fault."""

    present: frozenset[str]  # must be users
    allowed: frozenset[str]  # may be users (present included)
    exact: dict[str, UserView]  # must be exactly this (the opt-out: one of ``optouts``)
    optouts: dict[str, frozenset[str]]  # the levels an exact user may have
    blank: frozenset[str]  # if a user, has no vars and no lists
    untouched: frozenset[str]  # the users of failed rows: the run must leave them as they were


def expected_users(model: Model, behavior: str) -> Expected:
    """The reference: the users Sailthru must hold for ``model`` (see the module docstring)."""
    claims: dict[str, list[tuple[str, Person]]] = defaultdict(list)
    failing: set[str] = set()
    for pk, person in model.people.items():
        if person.failing:
            failing.add(person.email.lower())
        else:
            claims[person.email.lower()].append((pk, person))
    present = frozenset(claims)
    allowed = present | failing | (model.vacated if behavior == "delete" else model.ever)
    exact, optouts = {}, {}
    for email, people in claims.items():
        if len(people) != 1 or model.tainted(email) or email in failing:
            continue
        pk, person = people[0]
        exact[email] = UserView({k: as_var(v) for k, v in person.props}, person.groups)
        optouts[email] = frozenset(
            {person.optout} if person.optout else {"none", *model.levels[pk]})
    blank: frozenset[str] = frozenset()
    if behavior == "clear":
        blank = frozenset(e for e in model.ever - present - model.vacated - failing
                          if not model.tainted(e))
    untouched = frozenset(e for e in failing if not model.tainted(e))
    return Expected(present, frozenset(allowed), exact, optouts, blank, untouched)
