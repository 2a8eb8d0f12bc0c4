"""An audit's read of Sailthru: what it holds for the users a model manages.

Two ways to read, chosen by the cost model the sync's bulk path uses
(:func:`~.bulk_choice.bulk_is_faster`):

- **per user**: one GET /user per user (its vars and lists), paced like every call;
  time ≈ users / the GET /user rate;
- **export**: one ``export_list_data`` job per list the model manages (the lists of its
  rows and of its state, and the default list); time ≈ the job overhead + users × the
  per-row cost. An export only shows users on those lists, so each user expected in
  Sailthru but on none of them is then read by a GET (it may exist off the lists).

Vars read from an export are the CSV's text cells (an empty cell is "not set"), so values
are compared as that text (:func:`same_value`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ...errors import NotFound
from ...features.imports import ListImporter, PollPolicy
from ...transport.api import SailthruApi
from ..bulkload.bulk_choice import MAX_POLL, bulk_is_faster

__all__ = ["READ_MODES", "Held", "choose_read", "read_by_export", "read_per_user",
           "same_value"]

log = logging.getLogger(__name__)

READ_MODES = ("auto", "export", "user")
"""How an audit reads Sailthru: by the cost rule, through export jobs, or per user."""


@dataclass(frozen=True)
class Held:
    """What Sailthru holds for one user: its vars and the lists it is on.

    ``as_text``: the vars came from an export (text cells), so they compare as text.
    """

    vars: Mapping[str, Any] = field(default_factory=dict)
    lists: frozenset[str] = frozenset()
    as_text: bool = False


def choose_read(mode: str, users: int, pace: float) -> str:
    """``export`` or ``user``: ``mode`` when it says, else whichever the cost model says is
    faster for ``users`` users at ``pace`` GET /user calls per second."""
    if mode in ("export", "user"):
        return mode
    return "export" if bulk_is_faster(users, pace) else "user"


def read_per_user(
    api: SailthruApi, match_key: str, keys: Iterable[str], *, workers: int = 8
) -> dict[str, Held | None]:
    """GET each user by ``match_key``: its :class:`Held`, or None when Sailthru has none."""

    def read(key: str) -> tuple[str, Held | None]:
        try:
            reply = api.get("user", {"id": key, "key": match_key,
                                     "fields": {"vars": 1, "lists": 1}})
        except NotFound:
            return key, None
        return key, Held(dict(reply.get("vars") or {}), frozenset(reply.get("lists") or ()))

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="audit-read") as pool:
        return dict(pool.map(read, sorted(set(keys))))


def read_by_export(
    api: SailthruApi, match_key: str, keys: Collection[str], lists: Iterable[str],
    *, poll: PollPolicy | None = None,
) -> dict[str, Held | None]:
    """Read ``keys`` through an export of each of ``lists``; a user on none is read by a GET.

    A list Sailthru does not have (a restarted account) has no members. Users of the
    export that are not in ``keys`` are not kept (the lists may hold many other users).
    """
    wanted = set(keys)
    found: dict[str, Held] = {}
    importer = ListImporter(api)
    policy = poll or PollPolicy(initial_interval=0.2, max_interval=MAX_POLL)
    for name in sorted(set(lists)):
        try:
            for member in importer.members(name, poll=policy):
                key = _key_of(member.email, member.extid, member.sid, match_key)
                if key is None or key not in wanted:
                    continue
                seen = found.get(key)
                variables = {**(seen.vars if seen else {}), **member.vars}
                on = (seen.lists if seen else frozenset()) | {name}
                found[key] = Held(variables, on, as_text=True)
        except NotFound:
            log.info("list %r is not in Sailthru: none of its users is on it", name)
    rest = read_per_user(api, match_key, wanted - set(found))
    return {**found, **rest}


def _key_of(email: str | None, extid: str | None, sid: str | None, match_key: str) -> str | None:
    if match_key == "email":
        return email.strip().lower() if email else None
    return extid if match_key == "extid" else sid


def same_value(expected: Any, held: Any, *, as_text: bool) -> bool:
    """Whether Sailthru's ``held`` value is the ``expected`` one; ``""`` expects none."""
    if expected == "" or expected is None:
        return held is None or held == ""
    if held is None:
        return False
    if as_text:
        return _text(expected) == _text(held)
    if isinstance(expected, bool) or isinstance(held, bool):
        return type(expected) is type(held) and expected == held
    return bool(expected == held)


def _text(value: Any) -> str:
    """A value as an export's cell shows it."""
    return value if isinstance(value, str) else json.dumps(value)
