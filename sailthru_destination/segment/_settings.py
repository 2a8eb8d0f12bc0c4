"""The Segment destination's settings, as a marketer sets them, validated when built."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from string import Formatter
from typing import Any

from ..shaping.mapping import InvalidValue, list_name, reminder_time
from ._message import _optout

__all__ = ["SegmentSettings"]


@dataclass(frozen=True)
class SegmentSettings:
    """The destination settings a marketer sets in Segment, validated when built."""

    default_list_name: str | None = None
    """List every identified user joins (a message may name another: ``defaultListName``)."""
    optout_value: str | None = None
    """Opt-out level sent on identify: none, all, basic or blast (message: ``optoutValue``)."""
    default_reminder_template: str | None = None
    """Abandoned-cart reminder template for cart updates (message: ``reminder_template``)."""
    default_reminder_time: str | int | None = None
    """Delay of the cart reminder, like ``"20 minutes"`` (message: ``reminder_time``)."""
    customer_id: str | None = None
    """Sailthru customer id for page views; without it page calls are skipped."""
    audiences_to_lists: bool = False
    """Engage audience traits (``<audience_key>: true/false``) add/remove the list of that name."""
    clear_cart_after_hours: float | None = None
    """Empty a cart older than this before a change; must match the destination's option."""
    product_url_template: str | None = None
    """Url of a product without one, from its fields: ``"https://shop.example/p/{product_id}"``.

    Sailthru needs a url per purchased item and server-side sources send no page url; the
    template is filled from the product's own fields (``product_id``, ``sku``, ``name`` ...),
    each url-quoted."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.default_list_name is not None:
            set_(self, "default_list_name", _setting(list_name, self.default_list_name))
        if self.optout_value is not None:
            set_(self, "optout_value", _setting(_optout, self.optout_value))
        template = self.default_reminder_template
        if template is not None and (not isinstance(template, str) or not template.strip()):
            raise ValueError("default_reminder_template must be a template name")
        if self.default_reminder_time is not None:
            normalised = _setting(reminder_time, self.default_reminder_time)
            set_(self, "default_reminder_time", normalised)
        if self.customer_id is not None and (
            not isinstance(self.customer_id, str) or not self.customer_id.strip()
        ):
            raise ValueError("customer_id must be the Sailthru customer id (a string)")
        if not isinstance(self.audiences_to_lists, bool):
            raise ValueError("audiences_to_lists must be true or false")
        hours = self.clear_cart_after_hours
        if hours is not None and (
            isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours > 0
        ):
            raise ValueError(f"clear_cart_after_hours must be a positive number, got {hours!r}")
        if self.product_url_template is not None:
            _check_url_template(self.product_url_template)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'customer_id' and self.customer_id else repr(v)}"
            for f in fields(self)
            if (v := getattr(self, f.name)) is not None
        )
        return f"SegmentSettings({shown})"

    @classmethod
    def of(cls, settings: SegmentSettings | Mapping[str, Any] | None) -> SegmentSettings:
        """Settings from a :class:`SegmentSettings`, a mapping with the same names, or None."""
        if settings is None:
            return cls()
        if isinstance(settings, SegmentSettings):
            return settings
        if not isinstance(settings, Mapping):
            raise ValueError("settings must be SegmentSettings or a mapping")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(name) for name in settings if name not in known)
        if unknown:
            raise ValueError(
                f"unknown Segment settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(settings))


def _setting(check: Callable[[Any], str], value: Any) -> str:
    try:
        return check(value)
    except InvalidValue as exc:
        raise ValueError(f"{exc.field}: {exc.reason}") from None


def _check_url_template(template: object) -> None:
    problem = "product_url_template must be an http(s) url with {fields} of the product"
    if not isinstance(template, str) or not template.startswith(("https://", "http://")):
        raise ValueError(problem)
    try:
        parts = list(Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{problem}: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"{problem}: {{{name}}} is not a plain field name")
