"""One host profile change mapped to its POST /user payload: pure, no calls.

The per-user exporter (:mod:`.profiles`) and the bulk job file (:mod:`.sync.bulk`) both
build payloads with :func:`plan_upsert`, so the two paths cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from ..once.lists import ListRegistry, joined, membership_changes
from ..options import DestinationOptions, MatchKey, OptoutLevel, SyncMode
from ..results import ExportResult, Status
from ..shaping.mapping import InvalidValue, changed_vars, list_name, vars_for_change
from ..shaping.nulls import settle_nulls
from ..shaping.row_contract import SENT_FIELDS
from ..shaping.varnames import VarProblem, describe_problems

__all__ = ["ProfileChange", "UpsertPlan", "plan_upsert", "valid_key", "with_lists"]

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f.]+$")
_SID = re.compile(r"^[0-9a-f]{24}$")
_MAX_EMAIL = 254
_MAX_EXTID = 255
# The email is a Sailthru key, not a var: it travels in ``id`` or ``keys``.
KEY_PROPERTIES = ("email",)


@dataclass(frozen=True)
class ProfileChange:
    """One host profile, before and after a change.

    ``key`` is the value of the destination's match key (an email, a Sailthru ID or an
    external id). ``old_key`` is the previous email when the email itself changed (else
    ``old_properties["email"]`` is used), or, matched by extid, the previous extid: the user
    that has it is then renamed (unless the new extid is a user already). ``to_delete``
    says the profile went away in the host. ``optout`` overrides the destination's opt-out
    level for this record; ``old_optout`` is the level last sent for it (None: none, or the
    destination's): a change of level alone is sent. ``consents`` are the purposes this
    profile consented to. ``record_id`` names the record in results and errors (the key when
    not given).
    """

    key: Any
    old_properties: Mapping[str, Any] = field(default_factory=dict)
    new_properties: Mapping[str, Any] = field(default_factory=dict)
    old_groups: Set[str] = frozenset()
    new_groups: Set[str] = frozenset()
    to_delete: bool = False
    record_id: str | None = None
    old_key: str | None = None
    optout: str | None = None
    consents: Set[str] | None = None
    old_optout: str | None = None
    resend: bool = False

    @property
    def id(self) -> str:
        """How results and errors name this record."""
        return str(self.record_id) if self.record_id is not None else str(self.key)


def valid_key(match_key: MatchKey | str, value: Any, field_name: str = "key") -> str:
    """``value`` as the Sailthru user key of kind ``match_key`` (emails lower-cased).

    Raises :class:`~sailthru_destination.shaping.mapping.InvalidValue` naming ``field_name`` when it
    is missing, not text, or not a valid email, Sailthru ID or extid.
    """
    match_key = MatchKey.parse(match_key, "match_key")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidValue(field_name, f"the {match_key} to match on is missing")
    if not isinstance(value, str):
        raise InvalidValue(
            field_name, f"the {match_key} must be a string, got {type(value).__name__}"
        )
    text: str = value.strip()
    if match_key is MatchKey.EMAIL:
        # isprintable() refuses lone surrogates (not encodable, so never sendable), zero-width
        # and other format characters that make two addresses look alike.
        if len(text) > _MAX_EMAIL or not _EMAIL.match(text) or not text.isprintable():
            raise InvalidValue(field_name, f"{text[:80]!r} is not a valid email address")
        return text.lower()
    if match_key is MatchKey.SID:
        if not _SID.match(text):
            raise InvalidValue(field_name, "a Sailthru ID is 24 lowercase hexadecimal characters")
        return text
    if len(text) > _MAX_EXTID or not text.isprintable():
        raise InvalidValue(field_name, "an extid must be at most 255 printable characters")
    return text


def _optional_email(value: Any, field_name: str) -> str | None:
    if value is None or value == "":
        return None
    return valid_key(MatchKey.EMAIL, value, field_name)


# -- the mapping: one change to one POST /user payload, with no I/O ------------------------------


@dataclass(frozen=True)
class UpsertPlan:
    """What one upsert change sends: its POST /user payload before lists are added.

    ``lists`` are the membership changes (added by :func:`with_lists` once the joined lists
    exist); ``created`` says the user is new to Sailthru as far as the host knows;
    ``old_email`` is the old match key when it changed (an email, or an extid: the name is
    the email's, the first such change): then reads decide which user gets the payload.
    ``note`` names the vars dropped as invalid (nothing silently).
    """

    key: str
    payload: dict[str, Any]
    lists: dict[str, int]
    created: bool
    old_email: str | None = None
    note: str = ""

    @property
    def needs_read(self) -> bool:
        """Whether a read must come before the write (so it cannot go in a bulk file)."""
        return self.old_email is not None

    def noted(self, result: ExportResult) -> ExportResult:
        """``result`` with the dropped-vars note added to its detail."""
        if not self.note:
            return result
        detail = f"{result.detail}; {self.note}" if result.detail else self.note
        return ExportResult(result.status, result.record_id, detail, result.error)


def plan_upsert(
    change: ProfileChange, options: DestinationOptions, timezone: Any = None
) -> ExportResult | UpsertPlan:
    """The payload an upsert ``change`` becomes, or its final result when no call is needed.

    Pure: no call, no list lookup. The per-user exporter and the bulk job file both build
    their payloads here, so the two paths cannot disagree. Raises
    :class:`~sailthru_destination.shaping.mapping.InvalidValue` for a bad value.
    """
    rid = change.id
    skipped = without_consent(change, options, rid)
    if skipped is not None:
        return skipped
    match = options.match_key
    value = valid_key(match, change.key)
    dropped: list[VarProblem] | None = [] if options.invalid_vars == "drop" else None
    new_email = new_email_of(change, value, options)
    old_email = old_email_of(change, value, options)
    email_changed = old_email is not None and new_email is not None and old_email != new_email
    # A row's extid changed (its email may not have): its old user gets the new extid, as a
    # changed email renames the user matched by email. A sid is Sailthru's: never renamed.
    old_extid = (change.old_key if match is MatchKey.EXTID and change.old_key is not None
                 and change.old_key != value else None)
    first_export = not change.old_properties and not change.old_groups and old_email is None
    facts = _Facts(change, options, timezone, value, new_email, email_changed, first_export,
                   dropped, whole=email_changed or old_extid is not None)
    # One part per sent field of the row contract: the "anything to send?" test and the
    # payload come from the same parts, so no field can change without being sent.
    parts = {name: _PARTS[name](facts) for name in SENT_FIELDS}
    if not (first_export or change.resend or any(part.changed for part in parts.values())):
        return ExportResult(Status.SKIPPED, rid, "unchanged: no call made")
    payload: dict[str, Any] = {"id": value, "key": str(match)}
    for part in parts.values():
        payload.update(part.payload)
    old_key = old_email if match is MatchKey.EMAIL and email_changed else old_extid
    return UpsertPlan(
        key=value,
        payload=payload,
        lists=facts.lists,
        created=first_export and options.sync_mode is SyncMode.UPSERT,
        old_email=old_key,
        note=describe_problems(dropped) if dropped else "",
    )


@dataclass
class _Facts:
    """What every part of one change's payload is computed from."""

    change: ProfileChange
    options: DestinationOptions
    timezone: Any
    value: str
    new_email: str | None
    email_changed: bool
    first_export: bool
    dropped: list[VarProblem] | None
    whole: bool = False  # the row lands on a user by a changed key: every field is sent
    lists: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Part:
    """One field's share of a payload, and whether the field changed."""

    changed: bool
    payload: dict[str, Any]


def _key_part(facts: _Facts) -> _Part:
    options, new_email = facts.options, facts.new_email
    payload: dict[str, Any] = {}
    if new_email is not None and options.match_key is not MatchKey.EMAIL and (
            facts.first_export or facts.email_changed or facts.change.resend):
        payload["keys"] = {"email": new_email}
    return _Part(facts.email_changed, payload)


def _vars_part(facts: _Facts) -> _Part:
    change, options = facts.change, facts.options
    # The nulls policy first: under "keep" a NULL is the old value, under "clear" an empty one.
    new_properties = settle_nulls(change.old_properties, change.new_properties,
                                  options.null_values)
    if facts.whole or change.resend:
        # The new email may land on a user Sailthru already has, or on a new one: its
        # values are not the old ones, so every var goes, not only the changes. A resend
        # assumes nothing of what Sailthru holds either.
        variables = vars_for_change(
            change.old_properties, new_properties, var_names=options.var_names,
            timezone=facts.timezone, exclude=KEY_PROPERTIES, dropped=facts.dropped)
    else:
        variables = changed_vars(
            change.old_properties, new_properties, var_names=options.var_names,
            timezone=facts.timezone, exclude=KEY_PROPERTIES, dropped=facts.dropped)
    return _Part(bool(variables), {"vars": variables} if variables else {})


def _lists_part(facts: _Facts) -> _Part:
    change, options = facts.change, facts.options
    old_lists = list_names_for(change.old_groups, options)
    new_lists = list_names_for(change.new_groups, options)
    always = [default_list_name(options)] if options.default_list else []
    lists = membership_changes(old_lists, new_lists, always=always)
    if facts.whole or change.resend:  # as for vars: the user may not be on them
        lists.update(dict.fromkeys(sorted(new_lists), 1))
    facts.lists = lists  # they travel beside the payload: joined lists are ensured first
    return _Part(any(k not in always or k in new_lists for k in lists), {})


def _optout_part(facts: _Facts) -> _Part:
    change, options = facts.change, facts.options
    new = _optout(change.optout, options, "optout")
    if new is None:
        return _Part(False, {})
    try:
        old = _optout(change.old_optout, options, "old_optout")
    except InvalidValue:
        old = None  # an unreadable old level: send the new one
    return _Part(new != old or change.resend, {"optout_email": str(new)})


_PARTS = {"key": _key_part, "vars": _vars_part, "lists": _lists_part, "optout": _optout_part}
if set(_PARTS) != set(SENT_FIELDS):  # pragma: no cover - a contract field without a part
    raise ImportError(f"plan_upsert has parts for {sorted(_PARTS)}, the row contract sends "
                      f"{sorted(SENT_FIELDS)}")


def with_lists(
    payload: dict[str, Any],
    lists: dict[str, int],
    registry: ListRegistry,
    ensured: set[str] | None = None,
) -> dict[str, Any]:
    """``payload`` with its ``lists`` changes, once every joined list exists (created if not).

    Leaving a list that never existed is a no-op; naming it could create it, so it is left out.
    ``ensured`` remembers the lists already ensured by this caller (a bulk file names the
    same few lists on every line).
    """
    wanted = joined(lists)
    if ensured is None:
        registry.ensure_all(wanted)
    else:
        registry.ensure_all(name for name in wanted if name not in ensured)
        ensured.update(wanted)
    sent = {name: flag for name, flag in lists.items() if flag or registry.exists(name)}
    return {**payload, "lists": sent} if sent else payload


def without_consent(
    change: ProfileChange, options: DestinationOptions, rid: str
) -> ExportResult | None:
    required = options.required_consents
    if required and not (set(change.consents or ()) & required):
        wanted = ", ".join(sorted(required))
        return ExportResult(Status.SKIPPED, rid, f"no consent to any of: {wanted}")
    return None


def _optout(level: str | None, options: DestinationOptions, name: str) -> OptoutLevel | None:
    """The level sent for ``level`` (the destination's when None)."""
    if level is None:
        return options.optout
    try:
        return OptoutLevel.parse(level, name)
    except ValueError as exc:
        raise InvalidValue(name, str(exc)) from None


def list_names_for(groups: Set[str], options: DestinationOptions) -> set[str]:
    if isinstance(groups, (str, bytes)) or not isinstance(groups, (Set, list, tuple)):
        raise InvalidValue("groups", "groups must be a set of group names")
    return {list_name(g, options.list_prefix) for g in groups}


def default_list_name(options: DestinationOptions) -> str:
    assert options.default_list is not None
    return list_name(options.default_list)


def new_email_of(change: ProfileChange, value: str, options: DestinationOptions) -> str | None:
    if options.match_key is MatchKey.EMAIL:
        return value
    return _optional_email(change.new_properties.get("email"), "email")


def old_email_of(change: ProfileChange, value: str, options: DestinationOptions) -> str | None:
    if change.old_key is not None and options.match_key is MatchKey.EMAIL:
        return _optional_email(change.old_key, "old_key")
    return _optional_email(change.old_properties.get("email"), "email")
