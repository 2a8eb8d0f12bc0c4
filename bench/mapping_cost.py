"""CPU cost of mapping one realistic profile to Sailthru vars (flatten + validate + diff).

Prints µs per profile for flatten_vars and for vars_for_change (old vs new), measured
with time.perf_counter over 20,000 iterations. Run: python bench/mapping_cost.py
"""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sailthru_destination.shaping.mapping import flatten_vars, vars_for_change

ITERATIONS = 20_000


def realistic_profile(n: int) -> dict[str, Any]:
    """About 20 properties with a little nesting, like a CDP customer profile."""
    return {
        "first_name": "Ann",
        "last_name": "Example",
        "City": "Oslo",
        "country": "NO",
        "ltv": 1234.5 + n,
        "orders_count": 17,
        "is_vip": True,
        "newsletter": False,
        "score": Decimal("42"),
        "signup_time": datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc),
        "last_order_date": date(2024, 1, 2),
        "birthday": date(1990, 5, 17),
        "last_seen": datetime(2024, 6, 1, 12, 0),
        "favourite colour": "green",
        "plan": "gold",
        "referrer": None,
        "address": {"street": "Main St 1", "zip": "0150", "geo": {"lat": 59.9, "lon": 10.7}},
        "tags": ["runner", "cyclist", "reader"],
        "last_order": {"id": "o-991", "total": 99.5, "items": 3},
        "preferences": {"email": True, "sms": False},
    }


def measure(label: str, func: Any) -> float:
    start = time.perf_counter()
    for i in range(ITERATIONS):
        func(i)
    per = (time.perf_counter() - start) / ITERATIONS * 1e6
    print(f"{label}: {per:.1f} µs per profile ({ITERATIONS} iterations)")
    return per


def main() -> None:
    profiles = [realistic_profile(n) for n in range(16)]
    old = realistic_profile(-1)
    sample = flatten_vars(profiles[0])
    print(f"profile: {len(profiles[0])} properties -> {len(sample)} vars")
    measure("flatten_vars", lambda i: flatten_vars(profiles[i % 16], timezone="Europe/Oslo"))
    measure(
        "vars_for_change (old vs new, only changed)",
        lambda i: vars_for_change(old, profiles[i % 16], only_changed=True),
    )


if __name__ == "__main__":
    main()
