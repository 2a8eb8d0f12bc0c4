"""Segment-spec messages to Sailthru: identify, track, page and alias, routed like presets.

Which message goes to which action is one table, :data:`PRESETS` (``(type, event)`` →
handler, ``event`` ``None`` meaning "any other"), as in Segment's ``action-destinations``.

* identify: the profile with extid = ``userId`` (else ``anonymousId``); traits become
  flattened vars, the ``email`` trait the email key; the default list is joined and the
  opt-out level set. With both ids and an existing anonymous profile, that profile is posted
  with ``keys: {extid: userId}`` and ``keysconflict: merge``: Sailthru folds the user-id
  profile into it and the result answers to ``userId`` (the only one-call merge, since a
  profile has one extid; this message's traits win over both). Every identify with keys
  carries ``keysconflict: merge``, so a profile that already owns the email is merged in.
  Traits Sailthru would refuse as vars are renamed or dropped and named in the detail;
  ISO-8601 strings under ``*_time``/``*_date`` names are sent as dates.
* track: a custom event (flattened properties, personal fields left out), except the
  e-commerce events: ``Order Completed`` → purchase, ``Product Added``/``Product Removed``
  → cart, ``Order Refunded`` → return, ``Subscribed`` → list join with opt-out ``none``.
* page: a page view on Sailthru's tracking service for ``customer_id``.
* alias: ``previousId``'s profile is merged into ``userId`` (``keysconflict: merge``).

Every message gets one result naming it (``record_id`` = ``messageId``): sent, skipped or
failed, with the reason. A batch keeps each user's messages in input order (an identify
must land before the cart it enables) while different users run concurrently.
"""

from ._adapter import SegmentAdapter
from ._presets import PRESETS
from ._settings import SegmentSettings

__all__ = ["PRESETS", "SegmentAdapter", "SegmentSettings"]
