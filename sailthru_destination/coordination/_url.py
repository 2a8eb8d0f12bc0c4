"""Redis URLs as they may be shown: every credential redis-py would read from one, hidden.

redis-py takes a password from the userinfo (``redis://user:pass@host``, ``redis://:pass@host``)
and from any query parameter (``?password=``, for ``redis://``, ``rediss://`` and ``unix://``).
:func:`redact_url` keeps what helps to find the server (scheme, user name, host, port, db,
harmless options) and replaces each password by ``***``. A URL too broken to parse (an
unencoded ``/``, ``?`` or ``#`` in the password ends the host early) is shown by its scheme
alone. :func:`url_secrets` lists the secret strings in a URL, raw and percent-decoded, so
that text from elsewhere (an exception from redis-py) can be scrubbed of them.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit

__all__ = ["MASK", "is_readable", "redact_url", "scrub", "url_secrets"]

MASK = "***"
# Query parameters whose value is a credential: "password", "ssl_password", "auth_token" ...
_SECRET_NAME = re.compile(r"pass|secret|token|auth|cred", re.IGNORECASE)
# Every name=value pair in the raw text, parsed or not.
_UNREADABLE = "{}://<a URL that cannot be read: check its form>"
_CUTS = re.compile(r"[/?#@]")
_RAW_PAIR = re.compile(r"(?:^|[?&;#])([^=&?;#]*)=([^&;#]*)")


def _scheme(url: str) -> str:
    head = url.split("://", 1)[0] if "://" in url else ""
    return head if head.isascii() and head.isalpha() else "redis"


def _split(url: str) -> SplitResult | None:
    """The parts of ``url``, or None when they cannot be trusted to be what they seem."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    if "@" in parts.path + parts.query + parts.fragment:
        # An "@" past the host: an unencoded "/", "?" or "#" cut a password short, and
        # what looks like the host or the port is the password's first part.
        return None
    return parts


def is_readable(url: str) -> bool:
    """Whether ``url`` parses into parts that are what they seem (see :func:`redact_url`)."""
    return _split(url) is not None


def redact_url(url: str) -> str:
    """``url`` with its passwords replaced by ``***``, fit for errors, logs and reprs."""
    parts = _split(url)
    if parts is None:
        return _UNREADABLE.format(_scheme(url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if has_password else f"{user}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(
        f"{quote(name, safe='')}={MASK if _SECRET_NAME.search(name) else quote(value, safe='')}"
        for name, value in pairs
    )
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return f"{shown}?{query}" if query else shown


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret strings in ``url`` (raw and decoded), longest first, parsed or not.

    Beyond what a parser finds, everything between ``://`` and the last ``@`` after the
    first ``:`` counts as a password, so a URL too broken to parse still gives its secret.
    """
    found: set[str] = set()
    rest = url.split("://", 1)[1] if "://" in url else url
    if "@" in rest:
        userinfo = rest.rsplit("@", 1)[0]
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        found.add(password)
    for name, value in _RAW_PAIR.findall(url):
        if _SECRET_NAME.search(name) and value:
            found.add(value)
    found |= {unquote(secret) for secret in found}
    # The pieces of a password an unencoded "/", "?", "#" or "@" cut apart, each of which a
    # parser may take for a host, a port or a path.
    found |= {piece for secret in found for piece in _CUTS.split(secret) if len(piece) > 1}
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***`` (longest first)."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
