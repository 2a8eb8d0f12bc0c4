"""The row contract: every field one row of a users model can carry, declared once.

Three places read this list, so that none of them can forget a field:

* the sync's change check (:func:`~sailthru_destination.sync.model.read_user_row` hashes
  every hashed field, so a row whose only change is one field is a changed row);
* the payload (:func:`~sailthru_destination.features.profile_payload.plan_upsert` builds one
  part per sent field, and its "anything to send?" test is "did any part change");
* the stateful model test (``tests/sync/test_sync_stateful.py`` has a rule per field and
  refuses to start when a field has none).

Adding a column kind means adding it here; the two checks above then fail until the payload
and the model test know it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HASHED_FIELDS", "ROW_CONTRACT", "SENT_FIELDS", "RowField"]


@dataclass(frozen=True)
class RowField:
    """One thing a row can carry.

    ``setting`` is the sync setting naming its column (None: every column not otherwise
    used). ``sent_as`` is the part of ``POST /user`` it becomes (None: it decides the action
    and is never sent). ``values`` says what the field takes and what "no value" means.
    """

    name: str
    setting: str | None
    sent_as: str | None
    values: str


ROW_CONTRACT: tuple[RowField, ...] = (
    RowField("key", "match_column", "id, keys",
             "the match value (email, sid or extid) and, for a user matched by sid or extid, "
             "its email column: a new email renames the user (or lands on the user who "
             "already has it)"),
    RowField("vars", None, "vars",
             "every other column: text, numbers, booleans, JSON, dates (typed by `types`); "
             "an empty cell clears the var"),
    RowField("lists", "groups_column", "lists",
             "list memberships, a JSON array or ';'-separated names; a name dropped leaves "
             "that list"),
    RowField("optout", "optout_column", "optout_email",
             "none, all, basic or blast; an empty cell leaves Sailthru's level as it is "
             "(a missing value never subscribes anyone again)"),
    RowField("deleted", "deleted_column", None,
             "true/1/yes or a boolean true, or a date-time (deleted at): the row is gone; "
             "false/0/no, a boolean false or an empty cell: it is not; anything else fails "
             "the row and its user is left as it is"),
)
"""Every field of a users row, in the order the content hash lists them."""

SENT_FIELDS: tuple[str, ...] = tuple(f.name for f in ROW_CONTRACT if f.sent_as)
"""The fields that become part of ``POST /user``: a change to any one alone is sent."""

HASHED_FIELDS: tuple[str, ...] = SENT_FIELDS
"""The fields the "did this row change" hash covers: exactly the ones that are sent."""
