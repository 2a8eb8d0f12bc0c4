"""The sync's form of the one decision: a model row and its state record in, an action out.

:func:`decide_row` is what ``sync``, ``sync --plan`` and an audit ask about one row: given
the row as the model holds it now (None: gone from the model, or marked deleted), the
record the state holds for it (None: never applied), what Sailthru is known to hold, and
the sync's config, what happens to the user. It builds the same
:class:`~sailthru_destination.features.profiles.ProfileChange` the runner exports
(:func:`change_of`) and asks :func:`sailthru_destination.features.decide.decide`, the function the
export carries out and the plan describes.

The runner decides which record a row starts from (its own, or one it takes over from a
gone row sharing its user: see :mod:`.runner`); this module takes that record as given.
"""

from __future__ import annotations

from ..features.decide import Action, Decision, Lookup, Sailthru, decide
from ..features.profiles import ProfileChange
from .config import SyncConfig
from .memory.digest import RESEND, content_part
from .memory.records import AppliedRecord
from .model import UserRow

__all__ = ["Action", "Decision", "Lookup", "Sailthru", "change_of", "decide_row", "renames"]


def renames(old: AppliedRecord | None, row: UserRow, config: SyncConfig) -> bool:
    """Whether ``row``, last applied as ``old`` under another match key, renames that user.

    A changed email always does (the user found by the old email gets the new one). A changed
    extid does when the email stays: it is the same person, and Sailthru keeps one user per
    email, so a second user could never be created for it (a key conflict on every run).
    A changed extid with another email (or none), and a changed sid, is another user: the row
    starts afresh and the old user gets the delete behaviour.
    """
    if old is None or old.match == row.match:
        return False
    if config.match_key == "email":
        return True
    return config.match_key == "extid" and _email(old.properties) is not None and (
        _email(old.properties) == _email(row.properties))


def _email(properties: dict[str, object]) -> str | None:
    email = properties.get("email")
    return email.strip().lower() or None if isinstance(email, str) else None


def change_of(
    row: UserRow | None, old: AppliedRecord | None, config: SyncConfig, *, resend: bool = False
) -> ProfileChange:
    """The profile change that moves the user from ``old`` (as last applied) to ``row``.

    ``row`` None: the row is gone, and its user (``old``) gets the delete behaviour.
    ``resend``: the row is sent whole, as if new (see ``ProfileChange.resend``); so is a row
    whose last resend failed (``old.hash`` is :data:`~.digest.RESEND`): what Sailthru holds
    for it is in doubt.
    After a mapping change (``old.hash`` empty) the old groups may name lists under another
    prefix: the new lists are joined and the old ones left alone rather than guessed.
    """
    if row is None:
        if old is None:
            raise ValueError("a gone row needs the record last applied for it")
        return ProfileChange(key=old.match, old_properties=old.properties,
                             old_groups=old.groups, to_delete=True, record_id=old.pk)
    old_key = old.match if old is not None and renames(old, row, config) else None
    return ProfileChange(
        key=row.match,
        old_properties=old.properties if old else {},
        new_properties=row.properties,
        old_groups=old.groups if old and old.hash else frozenset(),
        new_groups=row.groups,
        record_id=row.pk,
        old_key=old_key,
        optout=row.optout,
        old_optout=old.optout if old else None,
        resend=resend or (old is not None and old.hash == RESEND),
    )


def decide_row(
    row: UserRow | None,
    record: AppliedRecord | None,
    sailthru: Sailthru | None,
    config: SyncConfig,
    *,
    resend: bool = False,
    timezone: str = "UTC",
) -> Decision:
    """What the sync does with ``row`` given its state ``record`` and what ``sailthru`` holds.

    ``timezone`` is the account's (``AppOptions.timezone``), for naive dates in vars.
    ``sailthru`` None means nothing is known of Sailthru: when the action depends on it,
    the answer's ``needs`` names the user to read (see
    :class:`~sailthru_destination.features.decide.Decision`). An unchanged row (its content hash is
    the record's) is :attr:`Action.UNCHANGED` without building a change, unless ``resend``
    asks for the row whole (what a full resync or an audit's repair sends). Raises
    :class:`~sailthru_destination.shaping.mapping.InvalidValue` for a value Sailthru cannot take.
    """
    # The state keeps "<content hash>:<row digest>"; the content hash is the row's truth.
    if (not resend and row is not None and record is not None
            and content_part(record.hash) == row.hash):
        return Decision(Action.UNCHANGED, "no field of the row changed",
                        "unchanged: no call made")
    return decide(change_of(row, record, config, resend=resend), config.destination_options(),
                  sailthru or Sailthru(), timezone=timezone)
