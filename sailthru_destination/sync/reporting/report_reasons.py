"""Known failure reasons and their fixes, for the report page's failures table.

A failed record's reason is a sentence (see ``errors.jsonl``); :func:`classify` names the kind
of problem behind it and what a person does about it, so a page of 5,000 failures reads as a
few groups with one fix each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["KNOWN_REASONS", "Reason", "classify"]


@dataclass(frozen=True)
class Reason:
    """A kind of failure: a short title, the fix, and the pattern its reasons match."""

    title: str
    fix: str
    pattern: re.Pattern[str]


def _reason(title: str, fix: str, pattern: str) -> Reason:
    return Reason(title, fix, re.compile(pattern, re.IGNORECASE))


# First match wins: authentication before the HTTP codes a 401 also matches, and so on.
KNOWN_REASONS: tuple[Reason, ...] = (
    _reason("Authentication failed",
            "Check the API key and secret (SAILTHRU_API_KEY, SAILTHRU_API_SECRET); "
            "`sailthru-destination test-connection` says which one is wrong. Then run again.",
            r"authentication failed|invalid api key|sailthru error [35]\b|http 401\b|"
            r"disallowed ip|sailthru error 4\b"),
    _reason("Rate limited (429)",
            "Sailthru refused calls over the account's per-minute limit. Run again (failed "
            "records are retried); lower --rate-limit or --concurrency if it keeps happening.",
            r"\b429\b|sailthru error 43\b|too many .*requests|rate limit"),
    _reason("Invalid email",
            "Correct the address in the source's match column (email); the record is sent "
            "again on the next run.",
            r"valid email|invalid email|sailthru error 11\b"),
    _reason("Unknown list",
            "Create the list in Sailthru, or correct the group name in the source (check "
            "--list-prefix).",
            r"unknown list|sailthru error 15\b"),
    _reason("Invalid var name",
            "Rename the column to letters, digits, '_' and spaces (Sailthru scrubs other "
            "characters), or leave it out with --ignore.",
            r"var names?\b"),
    _reason("Outcome unknown",
            "The call was sent but no answer came back: whether Sailthru applied it is "
            "unknown. Run again: the record is sent again, and orders are read back first.",
            r"outcome unknown|is unknown|marked 'unknown'|marked 'pending'|timed? ?out|"
            r"may succeed if retried|connection"),
    _reason("Sailthru server error",
            "Sailthru failed (HTTP 5xx or error 9). Run again later: the record is retried.",
            r"http 5\d\d|sailthru error 9\b|internal error"),
    _reason("Invalid value",
            "Correct the named column's value in the source (see the reason for what was "
            "expected).",
            r"sailthru error 2\b|invalid|must be\b|expected (?:a|an|one|\d+)\b|not a valid"),
)
"""The failure reasons the report page groups by, each with its fix; the first match wins."""

_OTHER = Reason("Other",
                "Read the reason; calls.jsonl in this folder holds the exact call and answer.",
                re.compile(""))


def classify(reason: str) -> Reason:
    """The known kind of ``reason`` (a failed record's reason), or "Other"."""
    for known in KNOWN_REASONS:
        if known.pattern.search(reason):
            return known
    return _OTHER
