"""Profile export: one host profile change becomes at most one POST /user in steady state.

Also the delete behaviours (nothing, clear, delete) and the email change. A delete
is verified because Sailthru answered 200 to about 0.7 % of DELETEs that did not
happen (0.13 % needed a third try): deleting a user is a privacy duty, so a
delete is reported done only once the user is seen gone.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from .api import SailthruApi
from .errors import NotFound, RecordError, SailthruError
from .lists import ListRegistry, joined, membership_changes
from .locks import LockTimeout
from .mapping import InvalidValue, changed_vars, clear_vars, list_name, vars_for_change
from .options import AppOptions, DeleteBehavior, DestinationOptions, MatchKey, OptoutLevel, SyncMode
from .results import ExportResult, Status
from .varnames import VarProblem, describe_problems

__all__ = [
    "DeleteNotVerified",
    "DeleteVerifier",
    "ProfileChange",
    "ProfileExporter",
    "user_exists",
    "valid_key",
]

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f.]+$")
_SID = re.compile(r"^[0-9a-f]{24}$")
_MAX_EMAIL = 254
_MAX_EXTID = 255
# The email is a Sailthru key, not a var: it travels in ``id`` or ``keys``.
_KEY_PROPERTIES = ("email",)


@dataclass(frozen=True)
class ProfileChange:
    """One host profile, before and after a change.

    ``key`` is the value of the destination's match key (an email, a Sailthru ID or an
    external id). ``old_key`` is the previous email when the email itself changed (else
    ``old_properties["email"]`` is used). ``to_delete`` says the profile went away in the
    host. ``optout`` overrides the destination's opt-out level for this record;
    ``consents`` are the purposes this profile consented to. ``record_id`` names the
    record in results and errors (the key when not given).
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

    @property
    def id(self) -> str:
        """How results and errors name this record."""
        return str(self.record_id) if self.record_id is not None else str(self.key)


def user_exists(api: SailthruApi, key: str, value: str) -> bool:
    """Whether Sailthru finds a user by ``key`` (``email``, ``sid``, ``extid``) = ``value``."""
    try:
        api.get("user", {"id": value, "key": key, "fields": {"keys": 1}})
    except NotFound:
        return False
    return True


class DeleteNotVerified(Exception):
    """The user was still in Sailthru after every delete attempt."""


class DeleteVerifier:
    """Deletes a user and keeps at it until the user is seen gone, or gives up loudly.

    Sailthru's reads are eventually consistent: a read soon after a write may show an
    older version, and for a user created moments ago that older version is "no such
    user". So "gone" is believed only when a second read, ``confirm_after`` seconds
    later, says so too.
    """

    def __init__(
        self,
        api: SailthruApi,
        *,
        attempts: int = 5,
        backoff: float = 0.5,
        confirm_after: float = 1.0,
    ) -> None:
        self._api = api
        self._attempts = attempts
        self._backoff = backoff
        self._confirm_after = confirm_after

    def _gone(self, lookups: list[tuple[str, str]]) -> bool:
        if any(user_exists(self._api, k, v) for k, v in lookups):
            return False
        if self._confirm_after <= 0:
            return True
        self._api.wait(self._confirm_after)
        return not any(user_exists(self._api, k, v) for k, v in lookups)

    def delete(self, key: str, value: str, *, email: str | None = None) -> int:
        """Delete the user and return the attempts it took; raise if never seen gone."""
        lookups = [(key, value)]
        if email and (key, value) != ("email", email):
            lookups.append(("email", email))
        for attempt in range(1, self._attempts + 1):
            # "Not found" means already gone, or a racing delete won: verify all the same.
            with contextlib.suppress(NotFound):
                self._api.delete("user", {"id": value, "key": key})
            if self._gone(lookups):
                return attempt
            log.warning("user still present after delete attempt %d of %d", attempt, self._attempts)
            if attempt < self._attempts:
                self._api.wait(self._backoff * 2 ** (attempt - 1))
        raise DeleteNotVerified(
            f"the user is still in Sailthru after {self._attempts} delete attempts; "
            "it was NOT deleted: retry this record (deleting it is a privacy obligation)"
        )


def valid_key(match_key: MatchKey | str, value: Any, field_name: str = "key") -> str:
    """``value`` as the Sailthru user key of kind ``match_key`` (emails lower-cased).

    Raises :class:`~sailthru_destination.mapping.InvalidValue` naming ``field_name`` when it
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


class ProfileExporter:
    """Applies :class:`ProfileChange` records to Sailthru users."""

    def __init__(
        self,
        api: SailthruApi,
        lists: ListRegistry,
        options: DestinationOptions,
        app: AppOptions,
    ) -> None:
        self._api = api
        self._lists = lists
        self._opts = options
        self._timezone = app.timezone
        self._verifier = DeleteVerifier(
            api,
            attempts=options.delete_attempts,
            confirm_after=options.delete_confirm_after,
        )

    def export(self, change: ProfileChange) -> ExportResult:
        """Apply one change; never raises for a bad record or a Sailthru refusal."""
        rid = change.id
        try:
            return self._export(change, rid)
        except InvalidValue as exc:
            return ExportResult.failed(RecordError(rid, exc.reason, field=exc.field))
        except SailthruError as exc:
            return ExportResult.failed(RecordError.from_error(rid, exc))
        except DeleteNotVerified as exc:
            return ExportResult.failed(RecordError(rid, str(exc), retryable=True))
        except LockTimeout as exc:
            return ExportResult.failed(RecordError(rid, str(exc), field="lists", retryable=True))

    # -- the cases ---------------------------------------------------------------------------

    def _export(self, change: ProfileChange, rid: str) -> ExportResult:
        required = self._opts.required_consents
        if required and not (set(change.consents or ()) & required):
            wanted = ", ".join(sorted(required))
            return ExportResult(Status.SKIPPED, rid, f"no consent to any of: {wanted}")
        match = self._opts.match_key
        value = valid_key(match, change.key)
        if change.to_delete:
            return self._remove(change, rid, value)

        optout = self._optout(change)
        dropped: list[VarProblem] | None = [] if self._opts.invalid_vars == "drop" else None
        variables = changed_vars(
            change.old_properties,
            change.new_properties,
            var_names=self._opts.var_names,
            timezone=self._timezone,
            exclude=_KEY_PROPERTIES,
            dropped=dropped,
        )
        result = self._upsert(change, rid, value, optout, variables)
        if not dropped:
            return result
        # Nothing silently dropped: every var not sent as named is in the result.
        note = describe_problems(dropped)
        detail = f"{result.detail}; {note}" if result.detail else note
        return ExportResult(result.status, result.record_id, detail, result.error)

    def _upsert(
        self,
        change: ProfileChange,
        rid: str,
        value: str,
        optout: OptoutLevel | None,
        variables: Mapping[str, Any],
    ) -> ExportResult:
        match = self._opts.match_key
        old_lists = self._list_names(change.old_groups)
        new_lists = self._list_names(change.new_groups)
        always = [self._default_list()] if self._opts.default_list else []
        lists = membership_changes(old_lists, new_lists, always=always)

        new_email = self._new_email(change, value)
        old_email = self._old_email(change, value)
        email_changed = old_email is not None and new_email is not None and old_email != new_email
        first_export = not change.old_properties and not change.old_groups and old_email is None
        if email_changed:
            # The new email may land on a user Sailthru already has, or on a new one: its
            # values are not the old ones, so every var and list goes, not only the changes.
            variables = vars_for_change(
                change.old_properties, change.new_properties, var_names=self._opts.var_names,
                timezone=self._timezone, exclude=_KEY_PROPERTIES,
            )
            lists.update(dict.fromkeys(sorted(new_lists), 1))
        real_list_changes = {k: v for k, v in lists.items() if k not in always or k in new_lists}
        if not (variables or real_list_changes or email_changed or first_export):
            return ExportResult(Status.SKIPPED, rid, "unchanged: no call made")

        payload: dict[str, Any] = {"id": value, "key": str(match)}
        if variables:
            payload["vars"] = variables
        if optout is not None:
            payload["optout_email"] = str(optout)
        if (
            new_email is not None
            and match is not MatchKey.EMAIL
            and (first_export or email_changed)
        ):
            payload["keys"] = {"email": new_email}

        if match is MatchKey.EMAIL and email_changed and old_email is not None:
            return self._change_email(rid, payload, lists, old_email, value)
        if self._opts.sync_mode is SyncMode.UPDATE and not self._exists(str(match), value):
            return ExportResult(Status.SKIPPED, rid, "no such user in Sailthru (update mode)")
        self._send(payload, lists)
        created = first_export and self._opts.sync_mode is SyncMode.UPSERT
        return ExportResult(Status.CREATED if created else Status.UPDATED, rid)

    def _change_email(
        self, rid: str, payload: dict[str, Any], lists: dict[str, int], old: str, new: str
    ) -> ExportResult:
        # The user who already owns the new email wins; otherwise the user found by the
        # old email gets the new email key. Never a second user for one person.
        if self._exists("email", new):
            self._send(payload, lists)
            return ExportResult(Status.UPDATED, rid, "email already in Sailthru: updated that user")
        if self._exists("email", old):
            self._send({**payload, "id": old, "keys": {"email": new}}, lists)
            return ExportResult(Status.UPDATED, rid, "email changed")
        if self._opts.sync_mode is SyncMode.UPDATE:
            return ExportResult(
                Status.SKIPPED, rid, "no user with the old or new email (update mode)"
            )
        self._send(payload, lists)
        return ExportResult(Status.CREATED, rid, "old email unknown to Sailthru: user created")

    def _remove(self, change: ProfileChange, rid: str, value: str) -> ExportResult:
        behavior = self._opts.delete_behavior
        key = str(self._opts.match_key)
        if behavior is DeleteBehavior.NOTHING:
            return ExportResult(Status.SKIPPED, rid, "delete behaviour is 'nothing': user kept")
        if behavior is DeleteBehavior.CLEAR:
            if not self._exists(key, value):
                return ExportResult(
                    Status.SKIPPED, rid, "no such user in Sailthru: nothing to clear"
                )
            payload: dict[str, Any] = {"id": value, "key": key}
            cleared = clear_vars(
                change.old_properties,
                var_names=self._opts.var_names,
                exclude=_KEY_PROPERTIES,
                repair=self._opts.invalid_vars == "drop",
            )
            if cleared:
                payload["vars"] = cleared
            synced = self._list_names(change.old_groups)
            if self._opts.default_list:
                synced.add(self._default_list())
            lists = {name: 0 for name in sorted(synced) if self._lists.exists(name)}
            if lists:
                payload["lists"] = lists
            self._api.post("user", payload)
            return ExportResult(Status.CLEARED, rid)
        email = self._old_email(change, value) or self._new_email(change, value)
        attempts = self._verifier.delete(key, value, email=email)
        detail = "seen gone" if attempts == 1 else f"seen gone after {attempts} attempts"
        return ExportResult(Status.DELETED, rid, detail)

    # -- helpers -----------------------------------------------------------------------------

    def _send(self, payload: dict[str, Any], lists: dict[str, int]) -> None:
        self._lists.ensure_all(joined(lists))
        # Leaving a list that never existed is a no-op; naming it could create it.
        sent = {name: flag for name, flag in lists.items() if flag or self._lists.exists(name)}
        if sent:
            payload = {**payload, "lists": sent}
        self._api.post("user", payload)

    def _exists(self, key: str, value: str) -> bool:
        return user_exists(self._api, key, value)

    def _optout(self, change: ProfileChange) -> OptoutLevel | None:
        if change.optout is None:
            return self._opts.optout
        try:
            return OptoutLevel.parse(change.optout, "optout")
        except ValueError as exc:
            raise InvalidValue("optout", str(exc)) from None

    def _list_names(self, groups: Set[str]) -> set[str]:
        if isinstance(groups, (str, bytes)) or not isinstance(groups, (Set, list, tuple)):
            raise InvalidValue("groups", "groups must be a set of group names")
        return {list_name(g, self._opts.list_prefix) for g in groups}

    def _default_list(self) -> str:
        assert self._opts.default_list is not None
        return list_name(self._opts.default_list)

    def _new_email(self, change: ProfileChange, value: str) -> str | None:
        if self._opts.match_key is MatchKey.EMAIL:
            return value
        return _optional_email(change.new_properties.get("email"), "email")

    def _old_email(self, change: ProfileChange, value: str) -> str | None:
        if change.old_key is not None and self._opts.match_key is MatchKey.EMAIL:
            return _optional_email(change.old_key, "old_key")
        return _optional_email(change.old_properties.get("email"), "email")
