"""A Segment-spec message as the adapter reads it: ids, options, products, prices, checks.

Private to :mod:`sailthru_destination.segment`; every check raises
:class:`~sailthru_destination.shaping.mapping.InvalidValue` naming the message's own field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from string import Formatter
from typing import Any
from urllib.parse import quote

from ..errors import RecordError
from ..features.commerce import PurchaseItem
from ..features.profiles import valid_key
from ..options import MatchKey, OptoutLevel
from ..results import ExportResult
from ..shaping.mapping import InvalidValue

# -- the message -------------------------------------------------------------------------------


class _Message:
    """Read access to a Segment message with the spec's fallbacks, each value checked."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        message_id = raw.get("messageId")
        self.id = "" if message_id is None else str(message_id)
        kind = raw.get("type")
        self._type = kind.strip().lower() if isinstance(kind, str) else None
        event = raw.get("event")
        self._event = event.strip() if isinstance(event, str) else None

    @property
    def type(self) -> str:
        if not self._type:
            raise InvalidValue("type", "the message has no type")
        return self._type

    @property
    def event(self) -> str:
        if not self._event:
            raise InvalidValue("event", "a track message needs an event name")
        return self._event

    @property
    def label(self) -> str:
        where = f"message {self.id!r}" if self.id else "message without messageId"
        if self._type == "track" and self._event:
            return f"{where} (track {self._event!r})"
        return f"{where} ({self._type or 'no type'})"

    @property
    def context(self) -> Mapping[str, Any]:
        context = self.raw.get("context")
        return context if isinstance(context, Mapping) else {}

    def mapping(self, name: str) -> Mapping[str, Any]:
        value = self.raw.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise InvalidValue(name, f"{name} must be an object")
        return value

    def id_field(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidValue(name, f"{name} must be a string")
        return valid_key(MatchKey.EXTID, str(value), name)

    @property
    def user_id(self) -> str | None:
        return self.id_field("userId")

    @property
    def anonymous_id(self) -> str | None:
        return self.id_field("anonymousId")

    @property
    def email(self) -> str | None:
        """The user's email: from properties, traits or context.traits, in that order."""
        traits = self.context.get("traits")
        for where, source in (
            ("properties", self.raw.get("properties")),
            ("traits", self.raw.get("traits")),
            ("context.traits", traits),
        ):
            if isinstance(source, Mapping) and source.get("email"):
                return _email(source["email"], f"{where}.email")
        return None

    def user_ref(self) -> tuple[str, str]:
        """How Sailthru knows the user: (extid, userId or anonymousId), else (email, email)."""
        extid = self.user_id or self.anonymous_id
        if extid is not None:
            return "extid", extid
        email = self.email
        if email is not None:
            return "email", email
        raise InvalidValue("userId", "the message names no user (userId, anonymousId or email)")

    @property
    def page_url(self) -> str | None:
        page = self.context.get("page")
        url = page.get("url") if isinstance(page, Mapping) else None
        return url if isinstance(url, str) and url.strip() else None

    @property
    def timestamp(self) -> datetime | str | None:
        raw = self.raw.get("timestamp")
        if not isinstance(raw, str) or not raw.strip():
            return None
        try:
            # Python 3.10 reads no "Z"; a zoned datetime goes out as unambiguous Unix seconds.
            moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            return raw.strip()  # Sailthru's own date parser gets a try
        return moment if moment.utcoffset() is not None else raw.strip()

    @property
    def _sailthru_options(self) -> Any:
        integrations = self.raw.get("integrations")
        return integrations.get("Sailthru") if isinstance(integrations, Mapping) else None

    @property
    def sailthru_disabled(self) -> bool:
        integrations = self.raw.get("integrations")
        if not isinstance(integrations, Mapping):
            return False
        own = integrations.get("Sailthru")
        return own is False or (own is None and integrations.get("All") is False)

    def option(self, name: str, default: Any) -> Any:
        """A per-message override from ``integrations.Sailthru``, else the setting."""
        options = self._sailthru_options
        if isinstance(options, Mapping) and options.get(name) is not None:
            return options[name]
        return default


# -- products, prices and small checks ---------------------------------------------------------


def _products(
    props: Mapping[str, Any], url_template: str | None, page_url: str | None
) -> list[PurchaseItem]:
    products = props.get("products")
    if products is None or (isinstance(products, Sequence) and not products):
        total = next((props[k] for k in ("revenue", "total", "value") if props.get(k)), None)
        said = f"a revenue of {total!r} but " if total is not None else ""
        raise InvalidValue(
            "properties.products",
            f"the order has {said}no products: Sailthru records a purchase as its items, "
            "so send properties.products",
        )
    if isinstance(products, (str, bytes, Mapping)) or not isinstance(products, Sequence):
        raise InvalidValue("properties.products", "products must be a list of objects")
    return [
        _product(p, f"properties.products[{n}]", url_template=url_template, page_url=page_url)
        for n, p in enumerate(products)
    ]


def _product(
    product: object,
    where: str,
    *,
    removing: bool = False,
    url_template: str | None = None,
    page_url: str | None = None,
) -> PurchaseItem:
    if not isinstance(product, Mapping):
        raise InvalidValue(where, "a product is an object")
    product_id = _first(product, "product_id", "sku", "id")
    if product_id is None:
        raise InvalidValue(f"{where}.product_id", "a product needs a product_id")
    if removing:
        return PurchaseItem(id=product_id, title="", qty=1, price=0)
    name = product.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidValue(f"{where}.name", "a product needs a name (Sailthru's item title)")
    quantity = product.get("quantity")
    return PurchaseItem(
        id=product_id,
        title=name,
        qty=1 if quantity is None else quantity,
        price=product.get("price"),
        url=_product_url(product, where, url_template, page_url),
        tags=_tags(product.get("tags"), f"{where}.tags"),
        image_url=product.get("image_url"),
        image_url_thumb=product.get("image_url_thumb"),
    )


def _product_url(
    product: Mapping[str, Any], where: str, template: str | None, page_url: str | None
) -> Any:
    """The item's url: its own, else ``product_url_template`` filled, else the page's."""
    url = product.get("url")
    if url is not None and url != "":
        return url
    if template is not None:
        return fill_url_template(template, product, where)
    if page_url is not None:
        return None  # the sender falls back to the message's page url
    raise InvalidValue(
        f"{where}.url",
        "the product has no url and the message no context.page.url (server-side sources "
        "have none): set product_url_template, e.g. 'https://shop.example/p/{product_id}'",
    )


def fill_url_template(template: str, product: Mapping[str, Any], where: str) -> str:
    """``template`` with each ``{field}`` replaced by the product's field, url-quoted."""
    values: dict[str, str] = {}
    for _, field, _, _ in Formatter().parse(template):
        if field is None:
            continue
        value = product.get(field)
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise InvalidValue(
                f"{where}.{field}", f"product_url_template needs the product's {field}"
            )
        values[field] = quote(str(value), safe="")
    return template.format_map(values)


def _adjustments(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    given = props.get("adjustments") or []
    if isinstance(given, (str, bytes, Mapping)) or not isinstance(given, Sequence):
        raise InvalidValue("properties.adjustments", "adjustments must be a list")
    lines: list[Mapping[str, Any]] = list(given)
    for name in ("tax", "shipping", "discount"):
        amount = props.get(name)
        if amount is None or amount == "":
            continue
        value = _decimal(amount, f"properties.{name}")
        if value == 0:
            continue
        # A discount lowers the total whichever sign the source gave it.
        lines.append({"title": name, "price": -abs(value) if name == "discount" else value})
    return lines


def _decimal(amount: object, field: str) -> Decimal:
    if isinstance(amount, bool) or not isinstance(amount, (int, float, str, Decimal)):
        raise InvalidValue(field, "an amount must be a number like 19.99")
    try:
        value = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(str(amount).strip())
    except InvalidOperation:
        raise InvalidValue(field, "an amount must be a number like 19.99") from None
    if not value.is_finite():
        raise InvalidValue(field, "an amount must be a finite number")
    return value


def _tags(value: object, field: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value):
        return [t.strip() for t in value if t.strip()]
    raise InvalidValue(field, "tags are a list of strings or a comma-separated string")


def _first(source: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = source.get(name)
        if value is not None and value != "" and not isinstance(value, bool):
            return str(value) if isinstance(value, (str, int)) else _text(value, name)
    return None


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(field, f"expected a string, got {type(value).__name__}")
    return value


def _email(value: object, field: str) -> str | None:
    if value is None or value == "":
        return None
    return valid_key(MatchKey.EMAIL, value, field)


def _optout(value: object, field: str = "optout_value") -> str:
    """An opt-out level; Segment's UI may send it capitalised."""
    if isinstance(value, str):
        value = value.strip().lower()
    try:
        return str(OptoutLevel.parse(value, field))
    except ValueError as exc:
        raise InvalidValue(field, str(exc)) from None


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _failed(record_id: str, field: str | None, reason: str) -> ExportResult:
    return ExportResult.failed(RecordError(record_id, reason, field=field))


_ITEM_FIELD = re.compile(r"items\[(\d+)\]\.(\w+)")
_CART_FIELD = re.compile(r"product\.(\w+)")
# Purchase item fields as Segment's products[] names them.
_SEGMENT_PRODUCT_FIELDS = {"qty": "quantity", "title": "name", "id": "product_id"}


def _segment_field(field: str | None) -> str | None:
    """A sender's field name as the message spells it (``items[0].qty`` → products' quantity)."""
    cart = _CART_FIELD.fullmatch(field or "")
    if cart is not None:
        name = cart.group(1)
        return f"properties.{_SEGMENT_PRODUCT_FIELDS.get(name, name)}"
    match = _ITEM_FIELD.fullmatch(field or "")
    if match is None:
        return field
    index, name = match.groups()
    return f"properties.products[{index}].{_SEGMENT_PRODUCT_FIELDS.get(name, name)}"


def _named(msg: _Message, result: ExportResult) -> ExportResult:
    """A sender's result re-keyed by the message id, its sentence naming the message."""
    detail = f"{msg.label}: {result.detail}" if result.detail else msg.label
    error = result.error
    if error is not None:
        error = replace(
            error,
            record_id=msg.id,
            reason=f"{msg.label}: {error.reason}",
            field=_segment_field(error.field),
        )
        detail = error.reason
    return ExportResult(result.status, msg.id, detail, error)
