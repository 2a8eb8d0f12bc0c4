"""Settling the intents a killed run (or a write of unknown outcome) left open.

Run first, before the diff, so the state matches what Sailthru holds. Each open intent's
user is read back (GET /user) and the state records what the read proves:

* an upsert: the row's record gets the old and the new values together (so whatever the
  write may have set is cleared when the row later drops it) and a hash that matches no
  row (so the row is sent again); a user created by the killed run is now known, and gets
  the delete behaviour when its row goes;
* an email change: the read says which email the user has now (renamed, not renamed, or
  the new email's own user, leaving the old one behind);
* a delete: a user seen gone (two reads, as a delete is verified) is forgotten; one still
  there stays, and the row, if it comes back, is sent again;
* a clear: the record stays and is sent again (a clear is idempotent).

What a read cannot prove stays open ("in doubt"), with its age, and is reported: a user
no lookup finds after an upsert (not created, or a lagging read), or a read that failed.
The state is still made safe for it: the row is sent again, and a gone row's user gets the
delete behaviour, which is verified.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..api import SailthruApi
from ..errors import SailthruError
from ..profiles import DeleteVerifier, user_exists
from .config import SyncConfig
from .intents import Intent
from .records import AppliedRecord
from .state import SyncState
from .summary import RecordNotice

__all__ = ["RESEND", "Settled", "settle_intents"]

log = logging.getLogger(__name__)

RESEND = "resend"
"""The hash of a record settled from an intent: it matches no row, so the row is sent again,
but (unlike the empty hash of a mapping change) its old groups still count."""


@dataclass
class Settled:
    """What settling found: intents closed, and intents left in doubt."""

    settled: int = 0
    in_doubt: int = 0


class _InDoubt(Exception):
    """The read could not prove what Sailthru holds."""


def settle_intents(
    api: SailthruApi,
    verifier: DeleteVerifier,
    config: SyncConfig,
    state: SyncState,
    notice: Callable[[RecordNotice], None],
) -> Settled:
    """Settle every open intent in ``state``: read each user back through ``api`` (a user
    to be gone is proved gone by ``verifier``); what a read cannot prove stays open and is
    reported through ``notice``."""
    outcome = Settled()

    def exists(key: str, value: str) -> bool:
        return user_exists(api, key, value)

    for intent in state.open_intents():
        try:
            done = _settle(exists, verifier, config, state, intent)
        except SailthruError as exc:
            done, why = False, f"the read failed ({exc})"
        else:
            why = "no user found by its key (not written, or a lagging read)"
        if done:
            outcome.settled += 1
            continue
        outcome.in_doubt += 1
        age = intent.age()
        log.warning("intent %s of %s %s in doubt for %.0f s: %s", intent.kind, intent.target,
                    intent.ident, age, why)
        notice(RecordNotice(
            intent.record.pk, f"in doubt: a {intent.kind} sent by an interrupted run "
            f"{age:.0f} s ago could not be confirmed: {why}; the row is sent again (a gone "
            "row's user gets the delete behaviour), and the next run reads it again",
            "write-ahead intent"))
    return outcome


def _settle(
    exists: Callable[[str, str], bool],
    verifier: DeleteVerifier,
    config: SyncConfig,
    state: SyncState,
    intent: Intent,
) -> bool:
    """Record what the read proves; True when the intent is settled."""
    if intent.kind in ("clear", "delete"):
        return _settle_removal(verifier, config, state, intent)
    return _settle_upsert(exists, config, state, intent)


def _settle_upsert(
    exists: Callable[[str, str], bool], config: SyncConfig, state: SyncState, intent: Intent
) -> bool:
    new = intent.record
    current = state.get(intent.ident)
    merged = dataclasses.replace(
        new, hash=_resend(current),
        properties={**intent.old_properties, **new.properties},
        groups=intent.old_groups | new.groups)
    match_key = config.match_key
    found_new = new.match is not None and exists(match_key, str(new.match))
    if intent.kind == "email" and intent.old_match is not None:
        found_old = exists("email", intent.old_match)
        if found_old and not found_new and current is not None:
            # Not renamed: the user is still the old email's; send the row again.
            state.put(dataclasses.replace(current, hash=_resend(current),
                                          properties=merged.properties, groups=merged.groups),
                      settles=intent)
            return True
        if found_new:
            if found_old and current is not None and config.delete_behavior != "nothing":
                state.leave(current)  # the new email's own user took the row: old left behind
            state.put(merged, settles=intent)
            return True
        state.put(merged)
        return False
    if (current is not None and current.key not in (None, new.key)
            and config.delete_behavior != "nothing"):
        state.leave(current)  # the row moved to another user: its old one is left behind
    if found_new:
        state.put(merged, settles=intent)
        return True
    state.put(merged)  # made safe, still in doubt
    return False


def _settle_removal(
    verifier: DeleteVerifier, config: SyncConfig, state: SyncState, intent: Intent
) -> bool:
    record = intent.record
    left = intent.target == "left"
    if intent.kind == "delete" and record.match is not None:
        lookups = [(str(config.match_key), str(record.match))]
        if verifier.gone(lookups):
            if left:
                state.drop_left(intent.ident, settles=intent)
            else:
                state.forget(intent.ident, settles=intent)
            return True
    # Cleared (idempotent) or still there: keep the user to act on again; if its row comes
    # back, it is sent again (a delete may have applied after all).
    if left:
        state.settle_intent(intent)
        return True
    current = state.get(intent.ident)
    if current is not None:
        state.put(dataclasses.replace(current, hash=_resend(current)), settles=intent)
    else:
        state.settle_intent(intent)
    return True


def _resend(current: AppliedRecord | None) -> str:
    """A hash that makes the row be sent again; a mapping change's empty hash stays."""
    return "" if current is not None and current.hash == "" else RESEND
