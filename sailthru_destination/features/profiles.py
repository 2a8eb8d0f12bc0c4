"""Profile export: one host profile change becomes at most one POST /user in steady state.

Also the delete behaviours (nothing, clear, delete) and the email change. A delete
is verified because Sailthru answered 200 to about 0.7 % of DELETEs that did not
happen (0.13 % needed a third try): deleting a user is a privacy duty, so a
delete is reported done only once the user is seen gone.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from ..errors import NotFound, RecordError, SailthruError
from ..once.lists import ListRegistry
from ..once.locks import LockTimeout
from ..options import AppOptions, DestinationOptions
from ..results import ExportResult
from ..shaping.mapping import InvalidValue
from ..transport.api import SailthruApi
from .decide import Action, Decision, Sailthru, decide
from .profile_payload import (
    ProfileChange,
    UpsertPlan,
    plan_upsert,
    valid_key,
    with_lists,
)

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

    # -- the cases: decided by decide(), carried out here ----------------------------------

    def _export(self, change: ProfileChange, rid: str) -> ExportResult:
        known = Sailthru()
        decision = decide(change, self._opts, known, timezone=self._timezone)
        while decision.needs is not None:  # read what the decision depends on, then again
            assert decision.lookup is not None
            key, value = decision.lookup
            if decision.verified:
                found = not self._verifier.gone([(key, value)])
            else:
                found = self._exists(key, value)
            known = known.knowing(decision.needs, found)
            decision = decide(change, self._opts, known, timezone=self._timezone)
        return self._carry_out(decision, rid)

    def _carry_out(self, decision: Decision, rid: str) -> ExportResult:
        action = decision.action
        if action is Action.DELETE:
            assert decision.target is not None
            key, value = decision.target
            attempts = self._verifier.delete(key, value, email=decision.email)
            detail = "seen gone" if attempts == 1 else f"seen gone after {attempts} attempts"
            return decision.result(rid, detail)
        if action is Action.CLEAR:
            assert decision.payload is not None and decision.lists is not None
            # Leaving a list that never existed is a no-op; naming it could create it.
            lists = {name: 0 for name in decision.lists if self._lists.exists(name)}
            self._api.post("user", {**decision.payload, "lists": lists} if lists
                           else decision.payload)
            return decision.result(rid)
        if action in (Action.CREATE, Action.UPDATE):
            assert decision.payload is not None and decision.lists is not None
            self._send(decision.payload, decision.lists)
        return decision.result(rid)

    # -- helpers -----------------------------------------------------------------------------

    def _send(self, payload: dict[str, Any], lists: dict[str, int]) -> None:
        self._api.post("user", with_lists(payload, lists, self._lists))

    def _exists(self, key: str, value: str) -> bool:
        return user_exists(self._api, key, value)


