"""Profile export: one host profile change becomes at most one POST /user in steady state.

Also the delete behaviours (nothing, clear, delete) and the email change. A delete
is verified because Sailthru answered 200 to about 0.7 % of DELETEs that did not
happen (0.13 % needed a third try): deleting a user is a privacy duty, so a
delete is reported done only once the user is seen gone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Set
from typing import Any

from .api import SailthruApi
from .errors import NotFound, RecordError, SailthruError
from .lists import ListRegistry
from .locks import LockTimeout
from .mapping import InvalidValue, clear_vars
from .options import AppOptions, DeleteBehavior, DestinationOptions, SyncMode
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
    with_lists,
    without_consent,
)
from .results import ExportResult, Status

__all__ = [
    "DeleteNotVerified",
    "DeleteVerifier",
    "ProfileChange",
    "ProfileExporter",
    "UpsertPlan",
    "plan_upsert",
    "user_exists",
    "valid_key",
    "with_lists",
]

log = logging.getLogger(__name__)


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

    def gone(self, lookups: list[tuple[str, str]]) -> bool:
        """Whether no lookup finds the user, by a read and a second read after the wait."""
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
            if self.gone(lookups):
                return attempt
            log.warning("user still present after delete attempt %d of %d", attempt, self._attempts)
            if attempt < self._attempts:
                self._api.wait(self._backoff * 2 ** (attempt - 1))
        raise DeleteNotVerified(
            f"the user is still in Sailthru after {self._attempts} delete attempts; "
            "it was NOT deleted: retry this record (deleting it is a privacy obligation)"
        )


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
        if change.to_delete:
            skipped = without_consent(change, self._opts, rid)
            if skipped is not None:
                return skipped
            return self._remove(change, rid, valid_key(self._opts.match_key, change.key))
        plan = plan_upsert(change, self._opts, self._timezone)
        if isinstance(plan, ExportResult):
            return plan
        return plan.noted(self._upsert(plan, rid))

    def _upsert(self, plan: UpsertPlan, rid: str) -> ExportResult:
        match = self._opts.match_key
        if plan.old_email is not None:
            return self._change_email(rid, plan.payload, plan.lists, plan.old_email, plan.key)
        if self._opts.sync_mode is SyncMode.UPDATE and not self._exists(str(match), plan.key):
            return ExportResult(Status.SKIPPED, rid, "no such user in Sailthru (update mode)")
        self._send(plan.payload, plan.lists)
        return ExportResult(Status.CREATED if plan.created else Status.UPDATED, rid)

    def _change_email(
        self, rid: str, payload: dict[str, Any], lists: dict[str, int], old: str, new: str
    ) -> ExportResult:
        # The user who already owns the new email wins; otherwise the user found by the
        # old email gets the new email key. Never a second user for one person. The payload
        # holds the row whole (every var and list, see plan_upsert), as neither of those
        # users may have it yet.
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
        self._send(payload, lists)  # a new user
        return ExportResult(Status.CREATED, rid, "old email unknown to Sailthru: user created")

    def _remove(self, change: ProfileChange, rid: str, value: str) -> ExportResult:
        behavior = self._opts.delete_behavior
        key = str(self._opts.match_key)
        if behavior is DeleteBehavior.NOTHING:
            return ExportResult(Status.SKIPPED, rid, "delete behaviour is 'nothing': user kept")
        if behavior is DeleteBehavior.CLEAR:
            # A read soon after the user was written may not see it yet: "no such user"
            # skips the clear for good, so it is believed only as a delete's "gone" is.
            if self._verifier.gone([(key, value)]):
                return ExportResult(
                    Status.SKIPPED, rid, "no such user in Sailthru: nothing to clear"
                )
            payload: dict[str, Any] = {"id": value, "key": key}
            cleared = clear_vars(
                change.old_properties,
                var_names=self._opts.var_names,
                exclude=KEY_PROPERTIES,
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
        self._api.post("user", with_lists(payload, lists, self._lists))

    def _exists(self, key: str, value: str) -> bool:
        return user_exists(self._api, key, value)

    def _list_names(self, groups: Set[str]) -> set[str]:
        return list_names_for(groups, self._opts)

    def _default_list(self) -> str:
        return default_list_name(self._opts)

    def _new_email(self, change: ProfileChange, value: str) -> str | None:
        return new_email_of(change, value, self._opts)

    def _old_email(self, change: ProfileChange, value: str) -> str | None:
        return old_email_of(change, value, self._opts)
