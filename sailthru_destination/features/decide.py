"""What to do with one profile change: the one decision the export, ``--plan`` and audit share.

:func:`decide` is pure: it takes the change (the row as it is now and as it was last
applied), what Sailthru is known to hold, and the options, and returns a
:class:`Decision`: create, update, clear, delete, keep, skip or unchanged, with why, and
the payload to write. When the action depends on Sailthru and what it holds is not known
yet, the decision says which read to make (:attr:`Decision.needs`); the caller reads and
decides again. So the exporter (which then writes), the plan (which only reads and
describes) and an audit (which has Sailthru's records from an export) cannot disagree:
they run the same function on the same facts.

The sync-level form, taking a model row and a state record, is
:func:`sailthru_destination.sync.decide.decide_row`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..options import DeleteBehavior, DestinationOptions, SyncMode
from ..results import ExportResult, Status
from ..shaping.mapping import clear_vars
from .profile_payload import (
    KEY_PROPERTIES,
    ProfileChange,
    UpsertPlan,
    default_list_name,
    list_names_for,
    new_email_of,
    old_email_of,
    plan_upsert,
    valid_key,
    without_consent,
)

__all__ = [
    "MOVED_WITH_THE_ROW", "UNCHANGED_DETAIL", "Action", "Decision", "Lookup", "Sailthru",
    "decide",
]

UNCHANGED_DETAIL = "unchanged: no call made"
"""The detail of a row that needs no call."""
MOVED_WITH_THE_ROW = ("email changed", "old email unknown to Sailthru: user created")
"""The details of an email change that renamed the old user, or found no old user: nothing
is left behind for the delete behaviour."""
_ONTO_EXISTING = "email already in Sailthru: updated that user"


class Action(str, Enum):
    """What a decision does to the Sailthru user."""

    CREATE = "create"
    UPDATE = "update"
    CLEAR = "clear"
    DELETE = "delete"
    KEEP = "keep"
    """A user no row maps to any more, kept (delete behaviour ``nothing``)."""
    SKIP = "skip"
    """Nothing written, on purpose (update mode and no such user, no consent, ...)."""
    UNCHANGED = "unchanged"
    """Nothing to send: every field of the row contract is as last applied."""

    def __str__(self) -> str:
        return str(self.value)


_STATUS = {Action.CREATE: Status.CREATED, Action.UPDATE: Status.UPDATED,
           Action.CLEAR: Status.CLEARED, Action.DELETE: Status.DELETED}


class Lookup(str, Enum):
    """A fact about Sailthru a decision may need: which user to look for."""

    USER = "user"
    """Whether Sailthru has the change's user (its key; for an email change, the new email)."""
    OLD_USER = "old_user"
    """Whether Sailthru has the user of the old email (an email change)."""


@dataclass(frozen=True)
class Sailthru:
    """What Sailthru is known to hold for one change; None: not known (not read)."""

    user: bool | None = None
    old_user: bool | None = None

    def knowing(self, lookup: Lookup, found: bool) -> Sailthru:
        """These facts and one more."""
        if lookup is Lookup.USER:
            return Sailthru(found, self.old_user)
        return Sailthru(self.user, found)


@dataclass(frozen=True)
class Decision:
    """What to do with one change, and why.

    ``action`` is final only when ``needs`` is None; otherwise read what ``needs`` names
    (``lookup``: the ``(key, value)`` to look the user up by; ``verified``: believe
    "absent" only as a delete's verification does, by two reads a wait apart) and call
    :func:`decide` again. ``why`` says why, for people (the plan, the audit). ``detail``
    is what the export result says (empty for a plain create or update).
    ``payload`` and ``lists`` are what to write for create, update and clear (``lists``
    are joined lists to ensure, and left lists to name only when they exist); ``target``
    is the user key the delete goes to, ``email`` the user's email (checked gone too).
    ``plan`` is the upsert payload's plan (its
    dropped-vars note). ``leaves_old_user``: the row's old user is left behind (the new
    email was already a user), so it gets the delete behaviour like a gone row's.
    """

    action: Action
    why: str
    detail: str = ""
    payload: dict[str, Any] | None = None
    lists: dict[str, int] | None = None
    target: tuple[str, str] | None = None
    email: str | None = None
    plan: UpsertPlan | None = None
    leaves_old_user: bool = False
    needs: Lookup | None = None
    lookup: tuple[str, str] | None = None
    verified: bool = False

    @property
    def status(self) -> Status:
        """The export status of this action."""
        return _STATUS.get(self.action, Status.SKIPPED)

    def result(self, record_id: str, detail: str | None = None) -> ExportResult:
        """The export result of carrying this decision out (``detail`` overrides)."""
        result = ExportResult(self.status, record_id, self.detail if detail is None else detail)
        return self.plan.noted(result) if self.plan is not None else result


def decide(
    change: ProfileChange,
    options: DestinationOptions,
    sailthru: Sailthru = Sailthru(),  # frozen: one shared default is safe
    *,
    timezone: str = "UTC",
) -> Decision:
    """The action for ``change`` given what ``sailthru`` holds, under ``options``.

    ``timezone`` is the account's, for naive dates in vars. Pure: no call is made. Raises
    :class:`~sailthru_destination.shaping.mapping.InvalidValue` naming the field for a bad value
    (the record then fails). See :class:`Decision` for reading the answer.
    """
    rid = change.id
    if change.to_delete:
        skipped = without_consent(change, options, rid)
        if skipped is not None:
            return Decision(Action.SKIP, skipped.detail, skipped.detail)
        return _gone(change, options, sailthru)
    plan = plan_upsert(change, options, timezone)
    if isinstance(plan, ExportResult):
        action = Action.UNCHANGED if plan.detail == UNCHANGED_DETAIL else Action.SKIP
        why = "no field of the row changed" if action is Action.UNCHANGED else plan.detail
        return Decision(action, why, plan.detail)
    if plan.old_email is not None:
        return _email_change(plan, options, sailthru)
    if options.sync_mode is SyncMode.UPDATE:
        if sailthru.user is None:
            return _needs(Lookup.USER, (str(options.match_key), plan.key))
        if not sailthru.user:
            detail = "no such user in Sailthru (update mode)"
            return Decision(Action.SKIP, detail, detail)
    if plan.created:
        return Decision(Action.CREATE, "new to the state", "", plan.payload, plan.lists,
                        plan=plan)
    why = "resent whole (full resync or repair)" if change.resend else "fields of the row changed"
    return Decision(Action.UPDATE, why, "", plan.payload, plan.lists, plan=plan)


def _needs(lookup: Lookup, where: tuple[str, str], *, verified: bool = False) -> Decision:
    return Decision(Action.SKIP, f"needs to know: {lookup.value}", needs=lookup, lookup=where,
                    verified=verified)


def _email_change(plan: UpsertPlan, options: DestinationOptions, sailthru: Sailthru) -> Decision:
    # The user who already owns the new email wins; otherwise the user found by the old
    # email gets the new email key. Never a second user for one person. The payload holds
    # the row whole (every var and list, see plan_upsert), as neither user may have it yet.
    # A changed extid is decided the same way, by extid.
    old = plan.old_email
    assert old is not None
    match = str(options.match_key)
    if sailthru.user is None:
        return _needs(Lookup.USER, (match, plan.key))
    if sailthru.user:
        return Decision(Action.UPDATE, f"the new {match} is already a user in Sailthru: that "
                        "user is updated, the old one is left behind (delete behaviour)",
                        _ONTO_EXISTING, plan.payload, plan.lists, plan=plan,
                        leaves_old_user=True)
    if sailthru.old_user is None:
        return _needs(Lookup.OLD_USER, (match, old))
    if sailthru.old_user:
        payload = {**plan.payload, "id": old,
                   "keys": {**plan.payload.get("keys", {}), match: plan.key}}
        return Decision(Action.UPDATE, f"the {match} changed: the user is renamed",
                        MOVED_WITH_THE_ROW[0], payload, plan.lists, plan=plan)
    if options.sync_mode is SyncMode.UPDATE:
        detail = f"no user with the old or new {match} (update mode)"
        return Decision(Action.SKIP, detail, detail)
    return Decision(Action.CREATE, f"neither {match} is a user in Sailthru: a user is created",
                    MOVED_WITH_THE_ROW[1], plan.payload, plan.lists, plan=plan)


def _gone(change: ProfileChange, options: DestinationOptions, sailthru: Sailthru) -> Decision:
    behavior = options.delete_behavior
    match = options.match_key
    value = valid_key(match, change.key)
    if behavior is DeleteBehavior.NOTHING:
        detail = "delete behaviour is 'nothing': user kept"
        return Decision(Action.KEEP, "no row maps to this user any more", detail)
    if behavior is DeleteBehavior.DELETE:
        email = old_email_of(change, value, options) or new_email_of(change, value, options)
        return Decision(Action.DELETE, "no row maps to this user any more",
                        target=(str(match), value), email=email)
    # A read soon after the user was written may not see it yet: "no such user" skips the
    # clear for good, so it is believed only as a delete's "gone" is.
    if sailthru.user is None:
        return _needs(Lookup.USER, (str(match), value), verified=True)
    if not sailthru.user:
        detail = "no such user in Sailthru: nothing to clear"
        return Decision(Action.SKIP, detail, detail)
    payload: dict[str, Any] = {"id": value, "key": str(match)}
    cleared = clear_vars(change.old_properties, var_names=options.var_names,
                         exclude=KEY_PROPERTIES, repair=options.invalid_vars == "drop")
    if cleared:
        payload["vars"] = cleared
    synced = list_names_for(change.old_groups, options)
    if options.default_list:
        synced.add(default_list_name(options))
    return Decision(Action.CLEAR, "no row maps to this user any more", "", payload,
                    {name: 0 for name in sorted(synced)})
