"""Options a host gives the destination, validated when they are built.

Options are plain frozen dataclasses: build them once, share them between
threads, never mutate them.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import urlsplit

from .shaping.mapping import InvalidValue, reminder_time
from .shaping.nulls import NULL_VALUES
from .transport._protocol import is_loopback_url

if TYPE_CHECKING:  # the redis extra is optional: import it only for type checkers
    from .coordination import RedisCoordination

_C = TypeVar("_C", bound="_Choice")

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_TRACKING_URL",
    "AppOptions",
    "DeleteBehavior",
    "DestinationOptions",
    "MatchKey",
    "OptoutLevel",
    "SyncMode",
]

DEFAULT_API_URL = "https://api.sailthru.com"
"""Sailthru's API, where ``AppOptions.api_url`` points by default."""
DEFAULT_TRACKING_URL = "https://api.sail-track.com"
"""Sailthru's page-view tracking service, ``AppOptions.tracking_url``'s default."""


_USERINFO = re.compile(r"//[^/?#]*@")
# What a host name or address may hold: no whitespace, no URL punctuation.
_HOST = re.compile(r"[^\s/\\?#@<>\"'`{}|^%]+")


def _check_url(name: str, url: str) -> str:
    # Errors show the URL without any user name or password it holds.
    shown = _USERINFO.sub("//***@", url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid URL ({exc}), got {shown!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL with a host, got {shown!r}")
    if not _HOST.fullmatch(parts.hostname) or parts.query or parts.fragment:
        raise ValueError(f"{name} is not a valid base URL (a bad host name, or a query or "
                         f"fragment), got {shown!r}")
    if "@" in parts.netloc:
        raise ValueError(f"{name} must not hold a user name or password (Sailthru "
                         f"authenticates with the API key and secret), got {shown!r}")
    if parts.scheme == "http" and not is_loopback_url(url):
        raise ValueError(
            f"{name} {url!r} is plain http: the API secret's signatures would travel "
            "unencrypted; use https (plain http is allowed only for loopback test servers)"
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class AppOptions:
    """How to reach one Sailthru account.

    ``api_secret`` never appears in ``repr()``.
    """

    api_key: str
    """The account's API key (shown masked to its last 4 characters in logs and reports)."""
    api_secret: str = field(repr=False)
    """The account's API secret: signs every call; never logged, shown or sent."""
    api_url: str = DEFAULT_API_URL
    """Sailthru's API. Must be https, except for a loopback test server such as
    :class:`sailthru_destination.testing.FakeSailthru`."""
    connect_timeout: float = 5.0
    """Seconds to wait for a connection to Sailthru."""
    read_timeout: float = 30.0
    """Seconds to wait for Sailthru's answer once the request is sent."""
    timezone: str = "UTC"
    """The account's time zone (an IANA name), applied to dates sent without one."""
    tracking_url: str = DEFAULT_TRACKING_URL
    """Sailthru's page-view tracking service."""

    def __post_init__(self) -> None:
        for name in ("api_key", "api_secret"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string")
        object.__setattr__(self, "api_url", _check_url("api_url", self.api_url))
        object.__setattr__(self, "tracking_url", _check_url("tracking_url", self.tracking_url))
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"timezone {self.timezone!r} is not an IANA time zone name"
                " (e.g. 'America/New_York')"
            ) from exc

    @property
    def masked_key(self) -> str:
        """The API key masked for logs (see
        :func:`~sailthru_destination.transport.calllog.mask_key`)."""
        from .transport.calllog import mask_key

        return mask_key(self.api_key)


class _Choice(str, Enum):
    """A string option with a fixed set of values and a helpful error for anything else."""

    @classmethod
    def parse(cls: type[_C], value: object, option: str) -> _C:
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"{option} must be one of {valid}; got {value!r}") from None

    def __str__(self) -> str:
        return str(self.value)


class MatchKey(_Choice):
    """Which Sailthru key identifies a user: the match value comes from the record."""

    EMAIL = "email"
    SID = "sid"
    EXTID = "extid"


class SyncMode(_Choice):
    """``upsert`` creates or updates users; ``update`` only touches users that already exist."""

    UPSERT = "upsert"
    UPDATE = "update"


class DeleteBehavior(_Choice):
    """What happens in Sailthru when a profile goes away in the host."""

    NOTHING = "nothing"
    CLEAR = "clear"
    DELETE = "delete"


class OptoutLevel(_Choice):
    """Sailthru's ``optout_email`` levels."""

    NONE = "none"
    ALL = "all"
    BASIC = "basic"
    BLAST = "blast"


@dataclass(frozen=True)
class DestinationOptions:
    """How profiles are exported: matching, sync mode, lists, opt-out, deletes and concurrency.

    Built once and validated when built: a wrong value raises ``ValueError`` naming the option
    and, for a choice, the valid values.
    """

    match_key: MatchKey = MatchKey.EMAIL
    """Which Sailthru key identifies a user (``"email"``, ``"sid"`` or ``"extid"``); the match
    value comes from each record."""
    sync_mode: SyncMode = SyncMode.UPSERT
    """``"upsert"`` creates or updates users; ``"update"`` only touches users that already
    exist (the others are skipped with that reason)."""
    delete_behavior: DeleteBehavior = DeleteBehavior.NOTHING
    """What a profile that goes away in the host does in Sailthru: ``"nothing"``, ``"clear"``
    (its vars are emptied) or ``"delete"`` (the user is deleted, and the delete verified)."""
    default_list: str | None = None
    """A list every exported user joins."""
    list_prefix: str = ""
    """Put in front of every list name made from a host group."""
    optout: OptoutLevel | None = None
    """The opt-out level (``optout_email``) sent with every user; a record may override it."""
    concurrency: int | None = None
    """How many records are in flight at once: None (the default) adapts it to the rate limit
    and the measured latency (2 to 64, by Little's law, see
    ``sailthru_destination.transport._adaptive``), a number pins it."""
    lock_dir: str | None = None
    """Where the cross-process list-creation lock files live (a per-user temp folder when
    None)."""
    var_names: Mapping[str, str] = field(default_factory=dict)
    """Renames host properties to Sailthru vars (property name -> var name)."""
    delete_attempts: int = 5
    """How many times a delete is tried and verified before it is reported failed."""
    delete_confirm_after: float = 1.0
    """Seconds after a first "user gone" read that a second read must agree before a delete is
    reported done (Sailthru's reads are eventually consistent; 0 turns the second read off)."""
    purchase_doubt_age: float = 600.0
    """How long (seconds; ten minutes by default) reads must keep missing an order whose post had
    no clear answer before a later run posts it again (see
    :mod:`sailthru_destination.once.doubt`)."""
    required_consents: frozenset[str] = frozenset()
    """When set, only profiles that consented to at least one of these purposes are exported;
    the others are skipped with that reason."""
    reminder_template: str | None = None
    """The abandoned-cart reminder template sent with every cart update unless the change gives
    its own."""
    reminder_time: str | int | None = None
    """When the cart reminder goes out: a time like ``"20 minutes"`` or minutes as an int, sent
    as ``"+20 minutes"``."""
    clear_cart_after_hours: float | None = None
    """Empties a cart older than this many hours before a new item is added."""
    coordination: RedisCoordination | None = None
    """Shares the list mutex, the known lists, the pacing and the sent keys with workers on
    other machines (:class:`~sailthru_destination.coordination.RedisCoordination`, from the
    ``redis`` extra); by default they are shared by the threads and processes of this machine
    (the sent keys by one destination)."""
    invalid_vars: Literal["fail", "drop"] = "fail"
    """What a property whose var Sailthru would refuse or rewrite (a name like ``first-name`` or
    ``id``, a NaN value) does to its record: ``"fail"`` fails the record naming the field;
    ``"drop"`` renames the var by the documented rule
    (:func:`~sailthru_destination.shaping.varnames.repaired_var_name`) or leaves it out, sends the
    rest,
    and names each one in the result's ``detail``."""
    null_values: Literal["keep", "clear"] = "keep"
    """What a ``None`` (NULL) property does to its var: ``"keep"`` (the default) leaves the var
    as Sailthru has it, ``"clear"`` empties it (see :mod:`sailthru_destination.shaping.nulls`)."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "match_key", MatchKey.parse(self.match_key, "match_key"))
        set_(self, "sync_mode", SyncMode.parse(self.sync_mode, "sync_mode"))
        set_(self, "delete_behavior", DeleteBehavior.parse(self.delete_behavior, "delete_behavior"))
        if self.optout is not None:
            set_(self, "optout", OptoutLevel.parse(self.optout, "optout"))
        for name in ("concurrency", "delete_attempts"):
            value = getattr(self, name)
            if name == "concurrency" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
                raise ValueError(f"{name} must be a whole number from 1 to 256, got {value!r}")
        confirm = self.delete_confirm_after
        if isinstance(confirm, bool) or not isinstance(confirm, (int, float)) or confirm < 0:
            raise ValueError(
                f"delete_confirm_after must be a number of seconds >= 0, got {confirm!r}"
            )
        age = self.purchase_doubt_age
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not age >= 0:
            raise ValueError(f"purchase_doubt_age must be a number of seconds >= 0, got {age!r}")
        if self.default_list is not None and (
            not isinstance(self.default_list, str) or not self.default_list.strip()
        ):
            raise ValueError("default_list must be a non-empty list name or None")
        if not isinstance(self.list_prefix, str):
            raise ValueError("list_prefix must be a string")
        if not isinstance(self.var_names, Mapping):
            raise ValueError(f"var_names must map property names to var names (a dict), got "
                             f"{self.var_names!r}")
        renames = dict(self.var_names)
        for source, target in renames.items():
            if not isinstance(source, str) or not isinstance(target, str) or not target.strip():
                raise ValueError(
                    f"var_names maps property names to var names; {source!r} -> {target!r} is not"
                )
        set_(self, "var_names", MappingProxyType(renames))
        set_(self, "required_consents", _names("required_consents", self.required_consents))
        if self.reminder_time is not None:
            try:
                reminder_time(self.reminder_time)
            except InvalidValue as exc:
                raise ValueError(f"reminder_time: {exc.reason}") from None
        hours = self.clear_cart_after_hours
        if hours is not None and (
            isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours > 0
        ):
            raise ValueError(f"clear_cart_after_hours must be a positive number, got {hours!r}")
        if self.invalid_vars not in ("fail", "drop"):
            raise ValueError(f"invalid_vars must be 'fail' or 'drop', got {self.invalid_vars!r}")
        if self.null_values not in NULL_VALUES:
            raise ValueError(f"null_values must be 'keep' or 'clear', got {self.null_values!r}")


def _names(option: str, value: object) -> frozenset[str]:
    """``value`` as a set of names; a plain string is refused rather than split into letters
    (``frozenset("email")`` is five one-letter purposes that no profile has)."""
    example = f"{option}={{'email_marketing'}}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{option} must be a collection of names such as {example}, "
                         f"not {type(value).__name__} {value!r}")
    names = list(value)
    bad = [name for name in names if not isinstance(name, str) or not name.strip()]
    if bad:
        raise ValueError(f"{option} must hold non-empty strings, got {bad[0]!r}")
    return frozenset(names)
