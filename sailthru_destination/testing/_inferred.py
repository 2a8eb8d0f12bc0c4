"""Answers the fake guesses, each switchable so a test can check the client copes with both.

Sailthru's documentation is silent on these; the defaults are our best reading (marked
**(inferred)** in the code that applies them and in the README). Set another answer with
``fake.inferred = Inferred(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Inferred"]


@dataclass(frozen=True)
class Inferred:
    """How the fake answers where the real service's answer is not confirmed.

    - ``key_conflict``: a POST /user setting a key (email, extid) another profile owns,
      without ``keysconflict: merge``: ``"refuse"`` (400, error 2; default) or ``"merge"``
      (the other profile is merged in, as with ``keysconflict: merge``).
    - ``unknown_user_event``: a POST /event for an email or extid no profile has:
      ``"create"`` (a profile is created, as POST /user does; default) or ``"refuse"``
      (400, error 99 "User not found").
    - ``empty_vars``: how GET /user shows a profile without vars: ``"empty"`` (``{}``;
      default) or ``"null"``.
    """

    key_conflict: Literal["refuse", "merge"] = "refuse"
    unknown_user_event: Literal["create", "refuse"] = "create"
    empty_vars: Literal["empty", "null"] = "empty"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("key_conflict", ("refuse", "merge")),
            ("unknown_user_event", ("create", "refuse")),
            ("empty_vars", ("empty", "null")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
