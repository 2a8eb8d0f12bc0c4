"""Which var names Sailthru accepts, and the one rule that repairs the others.

Sailthru refuses some var names and silently rewrites others ("scrubbed ... upon import"),
so a var sent under such a name lands elsewhere or nowhere. Where the input's names are
nobody's choice (Segment traits, or a host that sets ``invalid_vars="drop"``), each bad
name is **renamed** by :func:`repaired_var_name` when that gives a valid name, else
**dropped**; either way it is reported as a :class:`VarProblem`, never lost in silence.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "MAX_VAR_NAME_LENGTH",
    "RESERVED_VAR_NAMES",
    "VarProblem",
    "describe_problems",
    "repaired_var_name",
    "var_name_problem",
]

MAX_VAR_NAME_LENGTH = 255
"""Longest flattened var name accepted (our conservative limit; Sailthru documents none)."""

# Sailthru's docs: var names may not start with a number, may not contain special
# characters such as % - . $ ("scrubbed ... upon import") and may not be standard
# variable names or reserved words. A name Sailthru silently rewrites would land under
# another var, and our later clear ("") would miss it, so we refuse instead. We keep
# spaces (the spec says keys keep their spaces) and accept only ASCII letters.
_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]*")
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_ ]+")

RESERVED_VAR_NAMES: frozenset[str] = frozenset(
    {
        # keys and fields of a user profile (POST /user, the Zephyr profile object)
        "id", "key", "keys", "sid", "extid", "email", "cookie", "sms", "vars", "lists",
        "lists_signup", "optout_email", "keysconflict", "fields", "purchases",
        "purchase_incomplete", "profile",
        # standard Zephyr template variables, stored by Sailthru itself
        "beacon", "beacon_src", "beacon_ssl", "beacon_src_ssl", "beacon_url", "emailnum",
    }
)  # fmt: skip
"""Names refused as vars: they are user keys or Sailthru's own template variables."""


@lru_cache(maxsize=8192)
def var_name_problem(name: str) -> str | None:
    """Why Sailthru would refuse ``name`` as a var name, or ``None`` when it is fine.

    Accepted: 1 to :data:`MAX_VAR_NAME_LENGTH` characters of ASCII letters, digits,
    ``_`` and inner spaces, not starting with a digit, not in :data:`RESERVED_VAR_NAMES`.
    """
    if not name:
        return "var names cannot be empty"
    if len(name) > MAX_VAR_NAME_LENGTH:
        return f"var names are limited to {MAX_VAR_NAME_LENGTH} characters"
    if name in RESERVED_VAR_NAMES:
        return "this name is reserved by Sailthru (a user key or a standard template variable)"
    if name[0].isdigit():
        return "Sailthru refuses var names that start with a digit"
    if name[0] == " " or name[-1] == " ":
        return "var names cannot start or end with a space"
    if _VAR_NAME_RE.fullmatch(name) is None:
        return (
            "var names may hold only ASCII letters, digits, '_' and spaces "
            "(Sailthru scrubs other characters such as % - . $)"
        )
    return None


@lru_cache(maxsize=8192)
def repaired_var_name(name: str) -> str | None:
    """The valid name a refused var ``name`` is sent under, or ``None`` to drop it.

    The rule: accents are stripped (``é`` → ``e``, by Unicode NFKD), each run of other
    characters outside ASCII letters, digits, ``_`` and space becomes one ``_``, and outer
    spaces are trimmed (``first-name`` → ``first_name``, ``prénom`` → ``prenom``,
    ``a.b.c`` → ``a_b_c``). A result that is still refused (empty, reserved like ``id``,
    starting with a digit, too long) means the var is dropped.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    repaired = _NOT_NAME_CHARS.sub("_", ascii_only).strip(" ")
    return repaired if var_name_problem(repaired) is None else None


@dataclass(frozen=True)
class VarProblem:
    """A var not sent as named: renamed to ``renamed_to``, or dropped (``None``), and why."""

    name: str
    reason: str
    renamed_to: str | None = None

    def __str__(self) -> str:
        if self.renamed_to is not None:
            return f"{self.name!r} sent as {self.renamed_to!r}"
        return f"{self.name!r} dropped ({self.reason})"


def describe_problems(problems: list[VarProblem], what: str = "vars") -> str:
    """One sentence naming every renamed or dropped var, for a result's detail."""
    return f"{what} not sent as named: " + "; ".join(str(p) for p in problems)
