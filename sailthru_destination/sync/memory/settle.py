"""Settling the intents a killed run (or a write of unknown outcome) left open.

Run first, before the diff, so the state matches what Sailthru holds. Each open intent's
user is read back (GET /user) and the state records what the read proves:

* an upsert: when the user exists, the row's record gets the old and the new values
  together (so whatever the write may have set is cleared when the row later drops it) and
  a hash that matches no row (so the row is sent again, whole); a user created by the
  killed run is now known, and gets the delete behaviour when its row goes; a user that
  does not exist was not created;
* an email change: the read says which email the user has now (renamed, not renamed, or
  the new email's own user, leaving the old one behind);
* a delete: a user seen gone is forgotten; one still there stays, and the row, if it comes
  back, is sent again;
* a clear: the record stays and is sent again (a clear is idempotent).

Reads wait out Sailthru's lag first (a read soon after a write may show the user as it was
before: the wait a delete is verified with), so a user no lookup finds was not written.
What a read cannot prove (the read failed) stays open ("in doubt"), with its age, is
reported, and is read again by the next run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import SailthruError
from ...features.profiles import DeleteVerifier, user_exists
from ...transport.api import SailthruApi
from ..config import SyncConfig
from ..reporting.summary import RecordNotice
from .digest import RESEND
from .intents import Intent
from .records import AppliedRecord
from .state import SyncState

__all__ = ["RESEND", "Settled", "settle_intents"]

log = logging.getLogger(__name__)

# The hash of a record settled from an intent (the digest's marker, shared with a failed
# resend): it matches no row, so the row is sent again whole, and (unlike the empty hash of
# a mapping change) its old groups still count.


@dataclass
class Settled:
    """What settling found: intents closed, and intents left in doubt."""

    settled: int = 0
    in_doubt: int = 0


def settle_intents(
    api: SailthruApi,
    config: SyncConfig,
    state: SyncState,
    notice: Callable[[RecordNotice], None],
    *,
    lag: float = 1.0,
) -> Settled:
    """Settle every open intent in ``state`` by reading each user back through ``api``;
    what a read cannot prove stays open and is reported through ``notice``.

    ``lag`` is how long a read may show a user as it was before a write (the wait a delete
    is verified with, ``delete_confirm_after``): the reads wait until the youngest intent is
    that old, so a user no read finds was not written.
    """
    outcome = Settled()
    intents = state.open_intents()
    if not intents:
        return outcome
    youngest = min(intent.age() for intent in intents)
    if youngest < lag:
        api.wait(lag - youngest)
    verifier = DeleteVerifier(api, attempts=1, confirm_after=0.0)

    def exists(key: str, value: str) -> bool:
        return user_exists(api, key, value)

    for intent in intents:
        try:
            if intent.kind in ("clear", "delete"):
                _settle_removal(verifier, config, state, intent)
            else:
                _settle_upsert(exists, config, state, intent)
        except SailthruError as exc:
            outcome.in_doubt += 1
            age = intent.age()
            log.warning("intent %s of %s %s in doubt for %.0f s: the read failed: %s",
                        intent.kind, intent.target, intent.ident, age, exc)
            notice(RecordNotice(
                intent.record.pk, f"in doubt: whether a {intent.kind} sent {age:.0f} s ago "
                f"(by an interrupted run, or answered with an error) was applied is not known: "
                f"reading the user back failed ({exc}); the next run reads it again",
                "write-ahead intent"))
        else:
            outcome.settled += 1
    return outcome


def _settle_upsert(
    exists: Callable[[str, str], bool], config: SyncConfig, state: SyncState, intent: Intent
) -> None:
    new = intent.record
    current = state.get(intent.ident)
    merged = dataclasses.replace(
        new, hash=_resend(current),
        properties={**intent.old_properties, **new.properties},
        groups=intent.old_groups | new.groups)
    found_new = new.match is not None and exists(config.match_key, str(new.match))
    if intent.kind == "email" and intent.old_match is not None:
        found_old = exists(config.match_key, intent.old_match)
        if found_new:
            if found_old and current is not None and config.delete_behavior != "nothing":
                state.leave(current)  # the new email's own user took the row: old left behind
            state.put(merged, settles=intent)
        elif current is not None:
            # Not renamed (or the user is gone): the row is still the old email's; send it
            # again, whole.
            state.put(dataclasses.replace(current, hash=_resend(current),
                                          properties=merged.properties, groups=merged.groups),
                      settles=intent)
        else:
            state.settle_intent(intent)
        return
    if (current is not None and current.key not in (None, new.key)
            and config.delete_behavior != "nothing"):
        state.leave(current)  # the row moved to another user: its old one is left behind
    if found_new or current is not None:
        # Written (or the user was deleted elsewhere): the row is sent again, whole.
        state.put(merged, settles=intent)
    else:
        state.settle_intent(intent)  # a create that did not happen: nothing to know


def _settle_removal(
    verifier: DeleteVerifier, config: SyncConfig, state: SyncState, intent: Intent
) -> None:
    record = intent.record
    left = intent.target == "left"
    if (intent.kind == "delete" and record.match is not None
            and verifier.gone([(str(config.match_key), str(record.match))])):
        if left:
            state.drop_left(intent.ident, settles=intent)
        else:
            state.forget(intent.ident, settles=intent)
        return
    # Cleared (a clear is idempotent) or not deleted: the user stays to act on again; if its
    # row comes back, the row is sent again, whole (a clear may have emptied the user).
    current = None if left else state.get(intent.ident)
    if current is not None:
        state.put(dataclasses.replace(current, hash=_resend(current)), settles=intent)
    else:
        state.settle_intent(intent)


def _resend(current: AppliedRecord | None) -> str:
    """A hash that makes the row be sent again; a mapping change's empty hash stays."""
    return "" if current is not None and current.hash == "" else RESEND
