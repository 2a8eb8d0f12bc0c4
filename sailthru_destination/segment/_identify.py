"""identify and alias: the profile a Segment user id names, its traits, lists and merges."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..results import ExportResult, Status
from ..shaping.mapping import InvalidValue, audience_list_name, list_name
from ..shaping.varnames import VarProblem, describe_problems
from ._message import _email, _Message, _optout, _text
from ._vars import segment_vars

if TYPE_CHECKING:
    from ._adapter import SegmentAdapter

__all__ = ["alias", "identify"]


def identify(adapter: SegmentAdapter, msg: _Message) -> ExportResult:
    """Upsert the profile with extid = userId (else anonymousId): traits, email, lists."""
    extid = msg.user_id or msg.anonymous_id
    if extid is None:
        raise InvalidValue("userId", "an identify needs a userId or an anonymousId")
    traits = msg.mapping("traits")
    email = _email(traits.get("email"), "traits.email")
    # "id" is Segment's standard trait for the userId, which travels as the extid.
    variables, problems = segment_vars(traits, "traits", adapter.timezone, ("email", "id"))
    trait_id = traits.get("id")
    if trait_id is not None and str(trait_id) != extid:
        problems.append(VarProblem("traits.id", "the profile's id is the userId, never a var"))
    lists: dict[str, int] = {}
    default = msg.option("defaultListName", adapter.settings.default_list_name)
    if default is not None:
        lists[list_name(_text(default, "integrations.Sailthru.defaultListName"))] = 1
    lists.update(_audience_lists(adapter, msg, traits))
    payload: dict[str, Any] = {"id": extid, "key": "extid"}
    keys: dict[str, str] = {"email": email} if email else {}
    detail = f"profile {extid!r} updated"
    anonymous = msg.anonymous_id
    if msg.user_id and anonymous and anonymous != msg.user_id and adapter.has_extid(anonymous):
        payload["id"] = anonymous
        keys["extid"] = msg.user_id
        detail += f", anonymous profile {anonymous!r} merged in"
    if keys:
        payload["keys"] = keys
        # As Segment's own Sailthru destination does: a profile that already owns the email
        # (a newsletter signup before the account) is merged in instead of refusing the call.
        payload["keysconflict"] = "merge"
    if variables:
        payload["vars"] = variables
    optout = msg.option("optoutValue", adapter.settings.optout_value)
    if optout is not None:
        payload["optout_email"] = _optout(optout, "integrations.Sailthru.optoutValue")
    adapter.post_user(payload, lists)
    if problems:
        detail += f"; {describe_problems(problems, 'traits')}"
    return ExportResult(Status.SENT, msg.id, detail)


def _audience_lists(
    adapter: SegmentAdapter, msg: _Message, traits: Mapping[str, Any]
) -> dict[str, int]:
    personas = msg.context.get("personas")
    if not adapter.settings.audiences_to_lists or not isinstance(personas, Mapping):
        return {}
    key = personas.get("computation_key")
    audience = personas.get("computation_class", "audience") == "audience"
    if not audience or not isinstance(key, str) or key not in traits:
        return {}
    member = traits[key]
    if not isinstance(member, bool):
        raise InvalidValue(f"traits.{key}", "an audience trait is true or false")
    return {audience_list_name(key): int(member)}


def alias(adapter: SegmentAdapter, msg: _Message) -> ExportResult:
    """Merge previousId's profile into userId (``keysconflict: merge``)."""
    previous = msg.id_field("previousId")
    if previous is None or msg.user_id is None:
        raise InvalidValue("previousId", "an alias needs a previousId and a userId")
    if previous == msg.user_id:
        return ExportResult(Status.SKIPPED, msg.id, "alias: previousId is the userId")
    if not adapter.has_extid(previous):
        detail = f"alias: no Sailthru profile has extid {previous!r}: nothing to merge"
        return ExportResult(Status.SKIPPED, msg.id, detail)
    payload = {
        "id": previous,
        "key": "extid",
        "keys": {"extid": msg.user_id},
        "keysconflict": "merge",
    }
    adapter.destination.api.post("user", payload)
    detail = f"profile {previous!r} merged into {msg.user_id!r}"
    return ExportResult(Status.SENT, msg.id, detail)
