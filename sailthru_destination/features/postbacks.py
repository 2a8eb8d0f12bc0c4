"""Sailthru postbacks: verify their signature and turn them into typed changes.

Sailthru POSTs form-encoded parameters (``action=optout&email=...&sig=...``) to a URL
you configure; ``sig`` signs every other value with the API algorithm. This module
checks the signature in constant time (sailthru-client compares with ``!=``) and
parses the four actions into frozen dataclasses a host can apply:
:class:`OptoutChange`, :class:`HardBounce`, :class:`UserUpdate` and :class:`Verify`.
:func:`make_postback_app` wraps that in a stdlib-only WSGI app.

The secret and the signature never appear in errors or logs.

What the signature cannot see
-----------------------------
Sailthru's signature is an MD5 of the secret and the *values* sorted and concatenated: the
parameter names are not signed, and neither is where one value ends and the next begins.
So a captured postback can be changed without touching its signature in these ways, and
this module closes what it can:

* **An added empty parameter** (``&optout=``) adds nothing to the concatenation. Refused:
  any parameter the parser reads (``action``, ``email``, ``optout``, ``mode``, ``send_id``,
  ``blast_id``, ``sid``, ``optout_email``, ``lists``, ``vars`` and their ``[...]`` entries)
  that is present but empty or blank is a bad postback (400). Parameters it never reads
  (``api_key`` ...) carry no meaning, empty or not.
* **A repeated parameter** (``optout=1&optout=0``): refused (400), never last-wins, by the
  WSGI app and by :func:`parse_postback` given the pairs as sent or a framework's
  multi-value form (a plain ``dict`` built from the form has already lost the repeat).
* **Deep JSON** (``vars`` nested 5,000 levels) would crash the parser: nesting deeper than
  :data:`~._json.MAX_JSON_DEPTH`, in JSON or in ``[...]`` form, is refused (400).
* **One field given twice in two forms** (``vars={...}`` and ``vars[a]=``): refused (400).

Residual risk, which no check here can close (only a signature over names can): an attacker
holding a genuine signed postback may **rename parameters** and **permute values between
them** (``send_id=S1`` becomes ``blast_id=S1``; ``lists[A]=1&lists[B]=0`` becomes
``lists[A]=0&lists[B]=1``; ``mode=template`` renamed to an unread name turns a per-template
opt-out into a full one), and may **move characters between values** when the sorted
concatenation stays the same. Strict values narrow this (the action, the ``optout`` flag and
the email must each be well-formed, so most re-splits are refused), but the bracket form of
``lists``/``vars`` and the optional ids stay exposed: treat a postback as evidence from
Sailthru about *one user*, serve the endpoint over HTTPS only so postbacks cannot be
captured, and prefer re-reading the user (GET /user) before acting on list or var changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..transport._protocol import sign, signature_matches
from ._postback_fields import (
    PostbackError,
    check_read_fields,
    check_text,
    email_field,
    flag,
    lists_field,
    optional,
    required,
    shown,
    vars_field,
)

__all__ = [
    "MAX_BODY_BYTES",
    "HardBounce",
    "OptoutChange",
    "Postback",
    "PostbackError",
    "UserUpdate",
    "Verify",
    "make_postback_app",
    "parse_postback",
    "sign_postback",
    "verify_postback",
]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""Largest postback body the WSGI app reads (larger ones get HTTP 413)."""

_OPTOUT_LEVELS = frozenset({"all", "basic", "blast"})


@dataclass(frozen=True)
class OptoutChange:
    """The user changed their email opt-out.

    ``optout`` is True for an opt-out, False for an opt-back-in (``optout=0``); when
    Sailthru leaves it out, an optout postback means an opt-out. ``mode`` is as sent
    (``all``, ``basic``, ``blast``, ``template`` ...) or None.
    """

    email: str
    optout: bool
    mode: str | None = None

    @property
    def level(self) -> str | None:
        """The profile ``optout_email`` level this implies, or None when it is per-template."""
        if not self.optout:
            return "none"
        if self.mode is None:
            return "all"
        return self.mode if self.mode in _OPTOUT_LEVELS else None


@dataclass(frozen=True)
class HardBounce:
    """Mail to ``email`` hard-bounced, from a transactional send or a campaign (blast)."""

    email: str
    send_id: str | None = None
    blast_id: str | None = None


@dataclass(frozen=True)
class UserUpdate:
    """A user profile changed in Sailthru; ``lists`` maps list name to membership."""

    email: str
    sid: str | None = None
    optout_email: str | None = None
    lists: Mapping[str, bool] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verify:
    """Sailthru checking the postback URL for a send (``action=verify``)."""

    email: str
    send_id: str


Postback = OptoutChange | HardBounce | UserUpdate | Verify
"""Any parsed postback."""


def sign_postback(params: Mapping[str, str], api_secret: str) -> dict[str, str]:
    """``params`` with the ``sig`` Sailthru would send: for testing your postback endpoint."""
    if not api_secret:
        raise ValueError("a postback is signed with the API secret; it is empty")
    unsigned = {k: v for k, v in params.items() if k != "sig"}
    return {**unsigned, "sig": sign(unsigned, api_secret)}


def verify_postback(params: Mapping[str, str], api_secret: str) -> bool:
    """Whether ``params["sig"]`` signs all the other values with ``api_secret``.

    Constant-time comparison; an empty secret never verifies (anyone could sign).
    """
    if not api_secret:
        return False
    return signature_matches(params, api_secret)


def _parse_optout(params: Mapping[str, str]) -> OptoutChange:
    email = email_field(params, "optout")
    raw = params.get("optout")
    optout = True if raw is None else flag(raw, "optout")
    return OptoutChange(email=email, optout=optout, mode=optional(params, "mode"))


def _parse_hardbounce(params: Mapping[str, str]) -> HardBounce:
    return HardBounce(
        email=email_field(params, "hardbounce"),
        send_id=optional(params, "send_id"),
        blast_id=optional(params, "blast_id"),
    )


def _parse_update(params: Mapping[str, str]) -> UserUpdate:
    return UserUpdate(
        email=email_field(params, "update"),
        sid=optional(params, "sid"),
        optout_email=optional(params, "optout_email"),
        lists=lists_field(params),
        vars=vars_field(params),
    )


def _parse_verify(params: Mapping[str, str]) -> Verify:
    return Verify(
        email=email_field(params, "verify"),
        send_id=required(params, "send_id", "verify"),
    )


_PARSERS: Mapping[str, Callable[[Mapping[str, str]], Postback]] = {
    "optout": _parse_optout,
    "hardbounce": _parse_hardbounce,
    "update": _parse_update,
    "verify": _parse_verify,
}


def _unique_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``pairs`` as a dict; a name given twice is refused, never last-wins (nor first-wins)."""
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise PostbackError(f"field {shown(str(key))} is given more than once")
        fields[key] = value
    return fields


def _fields(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> Mapping[str, str]:
    getlist = getattr(params, "getlist", None)
    if isinstance(params, Mapping) and callable(getlist):
        # A framework's multi-value form (Werkzeug MultiDict, Django QueryDict): its plain
        # mapping view shows one value per name and would hide a repeated parameter.
        return _unique_fields((key, value) for key in params for value in getlist(key))
    if isinstance(params, Mapping):
        return params
    return _unique_fields(params)


def parse_postback(
    params: Mapping[str, str] | Iterable[tuple[str, str]], api_secret: str
) -> Postback:
    """The typed change a signed postback carries.

    ``params`` is a mapping of the form fields, or the ``(name, value)`` pairs as sent
    (``urllib.parse.parse_qsl(body, keep_blank_values=True)``); a framework's multi-value
    form (``request.form`` in Flask, ``request.POST`` in Django) may be passed as it is.
    A name given twice is refused.

    Raises :class:`PostbackError` with ``http_status`` 403 for a missing or wrong
    signature (checked first, so unsigned callers learn nothing else), and 400 for a
    repeated, missing, empty or malformed field, a missing or unknown action, or a field
    the signature cannot vouch for (see the module docs).
    """
    params = _fields(params)
    check_text(params)
    if not params.get("sig"):
        raise PostbackError("postback refused: it carries no signature", http_status=403)
    if not verify_postback(params, api_secret):
        raise PostbackError("postback refused: its signature does not match", http_status=403)
    check_read_fields(params)
    action = (params.get("action") or "").strip().lower()
    if not action:
        raise PostbackError("postback has no 'action'")
    parser = _PARSERS.get(action)
    if parser is None:
        shown = action if len(action) <= 40 else action[:37] + "..."
        raise PostbackError(
            f"unknown postback action {shown!r}; expected one of: {', '.join(sorted(_PARSERS))}"
        )
    return parser(params)


# ---- WSGI ------------------------------------------------------------------------------

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


def _reply(
    start_response: StartResponse, status: int, text: str, extra: tuple[tuple[str, str], ...] = ()
) -> list[bytes]:
    body = (text + "\n").encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra,
    ]
    start_response(f"{status} {_REASONS[status]}", headers)
    return [body]


def _read_form(environ: dict[str, Any]) -> dict[str, str]:
    """The form fields of a POST body; raises PostbackError with the HTTP status to send."""
    content_type = str(environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    if content_type not in ("", "application/x-www-form-urlencoded"):
        raise PostbackError("postbacks must be application/x-www-form-urlencoded", 415)
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        raise PostbackError("the request needs a Content-Length", 411) from None
    if length < 0:
        raise PostbackError("the request needs a valid Content-Length", 411)
    if length > MAX_BODY_BYTES:
        raise PostbackError(f"postbacks are limited to {MAX_BODY_BYTES} bytes", 413)
    body = environ["wsgi.input"].read(length) if length else b""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PostbackError("the postback body is not UTF-8") from None
    return _unique_fields(parse_qsl(text, keep_blank_values=True))


def make_postback_app(api_secret: str, handler: Callable[[Postback], None]) -> WsgiApp:
    """A WSGI app any server can mount at the postback URL configured in Sailthru.

    Accepts POST form bodies only (signed parameters in a query string would end up
    in access logs). Answers 200 ``ok`` once ``handler`` returned; 403 for a bad or
    missing signature; 400 for a malformed postback; 405 for other methods; 411, 413
    (over :data:`MAX_BODY_BYTES`) and 415 for unusable bodies; 500 when ``handler``
    raises (logged without the secret or signature, so Sailthru retries).
    """
    if not api_secret:
        raise ValueError("make_postback_app needs the API secret to verify postbacks")

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() != "POST":
            return _reply(start_response, 405, "postbacks must be POSTed", (("Allow", "POST"),))
        try:
            postback = parse_postback(_read_form(environ), api_secret)
        except PostbackError as exc:
            logger.warning("refused a postback (HTTP %d): %s", exc.http_status, exc)
            return _reply(start_response, exc.http_status, str(exc))
        try:
            handler(postback)
        except Exception:
            logger.exception("the postback handler failed on a %s", type(postback).__name__)
            return _reply(start_response, 500, "the postback could not be applied")
        return _reply(start_response, 200, "ok")

    return app
