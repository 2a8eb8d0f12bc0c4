"""The demo: sample profiles synced to an embedded fake Sailthru, changed, and synced again.

What a newcomer runs first (``sailthru-destination demo``): no account, no network, a few
seconds. The fake runs with generous rate limits so the demo is quick; the real Sailthru
allows 300 user calls per second.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .options import AppOptions
from .sync.config import SyncConfig
from .sync.run import run_sync
from .sync.runner import RunSummary
from .sync.warehouse.sources import open_source
from .testing import FakeSailthru

__all__ = ["DEMO_RATE_LIMITS", "change_profiles", "make_profiles", "run_demo"]

# Generous limits so the demo takes seconds: the real service allows user 300/s, others 40/s.
DEMO_RATE_LIMITS = {"user": 5000.0, "default": 5000.0}

_FIRST = ("Ann", "Bob", "Chloé", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas",
          "Kemi", "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tess")
_LAST = ("Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "García", "Hughes", "Ito",
         "Jensen", "Kowalski", "Lopez", "Müller", "Nguyen", "O'Brien", "Patel", "Rossi", "Smith")
_CITIES = (("New York", "US"), ("Austin", "US"), ("Toronto", "CA"), ("London", "GB"),
           ("Berlin", "DE"), ("Lyon", "FR"), ("Madrid", "ES"), ("Tokyo", "JP"))
_GROUPS = ("Newsletter", "High LTV", "Churn Risk", "Beta Testers", "Sale Alerts")
_PLANS = ("free", "plus", "pro")


def make_profiles(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` realistic sample profiles: names, emails, nested attributes, dates, groups."""
    rng = random.Random(seed)
    start = date(2022, 1, 1)
    profiles = []
    for number in range(1, count + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, country = rng.choice(_CITIES)
        local = f"{first}.{last}".lower().replace("'", "").replace("é", "e").replace("í", "i")
        local = local.replace("ü", "u")
        groups = sorted(g for g in _GROUPS if rng.random() < 0.3)
        profiles.append({
            "id": number,
            "email": f"{local}.{number}@example.com",
            "first_name": first,
            "last_name": last,
            "plan": rng.choice(_PLANS),
            "lifetime_value": round(rng.uniform(0, 2500), 2),
            "orders": rng.randint(0, 40),
            "vip": rng.random() < 0.1,
            "signup_date": (start + timedelta(days=rng.randint(0, 1000))).isoformat(),
            "address": {"city": city, "country": country},
            "preferences": {"sms": rng.random() < 0.4, "topics": rng.sample(
                ["shoes", "bags", "outdoor", "kids", "home"], k=2)},
            "groups": groups,
        })
    return profiles


def change_profiles(
    profiles: list[dict[str, Any]], seed: int = 7, changed: float = 0.10, removed: float = 0.05
) -> tuple[list[dict[str, Any]], int, int]:
    """The next version of the model: ``changed`` of the rows edited, ``removed`` dropped."""
    rng = random.Random(seed + 1)
    rows = [json.loads(json.dumps(p)) for p in profiles]
    gone = set(rng.sample(range(len(rows)), int(len(rows) * removed)))
    kept = [i for i in range(len(rows)) if i not in gone]
    edited = rng.sample(kept, int(len(rows) * changed))
    for index in edited:
        row = rows[index]
        row["plan"] = rng.choice([p for p in _PLANS if p != row["plan"]])
        row["orders"] += 1
        if rng.random() < 0.5:
            toggled = rng.choice(_GROUPS)
            groups = set(row["groups"]) ^ {toggled}
            row["groups"] = sorted(groups)
    return [rows[i] for i in kept], len(edited), len(gone)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


@contextmanager
def _folder(folder: str | None) -> Iterator[Path]:
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="sailthru-demo-") as temp:
        yield Path(temp)


def run_demo(
    *, rows: int = 1000, folder: str | None = None, seed: int = 7,
    out: Callable[[str], object] = print,
) -> int:
    """Run the demo and print what happened; returns the exit code (0 when nothing failed)."""
    started = time.monotonic()
    profiles = make_profiles(rows, seed)
    with _folder(folder) as home, FakeSailthru(
        api_key="demo-key", api_secret="demo-secret",  # noqa: S106 (the fake's demo secret)
        rate_limits=DEMO_RATE_LIMITS,
    ) as fake:
        out(f"Started an embedded fake Sailthru at {fake.url}")
        out("  (rate limits raised to 5,000/s so the demo is quick; real Sailthru: user 300/s)")
        model = home / "people.jsonl"
        _write_jsonl(model, profiles)
        out(f"Wrote {rows:,} sample profiles to {model}")
        app = AppOptions("demo-key", "demo-secret", fake.url)
        # 32 workers: each delete is verified twice, 1 s apart (Sailthru's false 200s).
        config = SyncConfig(name="people", delete_behavior="delete", bulk="never",
                            concurrency=32, rate_limits=DEMO_RATE_LIMITS)
        first = run_sync(app, config, open_source(str(model)), home=home / ".sailthru-sync")
        _show(out, "First sync (every profile is new)", first.summary)
        activity = _send_activity(app, home, profiles, seed, out)

        changed_rows, edited, removed = change_profiles(profiles, seed)
        _write_jsonl(model, changed_rows)
        out("")
        out(f"Changed {edited:,} profiles ({edited / rows:.0%}) and removed {removed:,} "
            f"({removed / rows:.0%}) in the model")
        second = run_sync(app, config, open_source(str(model)), home=home / ".sailthru-sync")
        _show(out, "Second sync (only the differences)", second.summary)
        third = run_sync(app, config, open_source(str(model)), home=home / ".sailthru-sync")
        out("")
        again = _send_activity(app, home, profiles, seed, None)
        out(f"A third sync with no change made {third.summary.total_calls} API calls; sending "
            f"the events and orders again made {again} (each is sent at most once).")

        names = [str(item["name"]) for item in fake.lists]
        out("")
        out(f"Fake Sailthru now holds {len(fake.users):,} users and {len(names)} lists "
            f"({', '.join(sorted(names))}); duplicate lists: {len(names) - len(set(names))}")
        out(f"Run report of the second sync: {second.report}")
        if not folder:
            out("  (in a temporary folder, removed now: use --folder DIR to keep it)")
        out(f"Demo finished in {time.monotonic() - started:.1f} s.")
    failed = first.summary.failed + second.summary.failed + third.summary.failed
    return 1 if failed or activity < 0 else 0


def make_activity(
    profiles: list[dict[str, Any]], seed: int = 7
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Sample events (page views, wishlist adds) and orders for some of the profiles."""
    rng = random.Random(seed + 2)
    events, orders = [], []
    for number, profile in enumerate(rng.sample(profiles, len(profiles) // 5), start=1):
        events.append({"id": f"ev-{number}", "email": profile["email"],
                       "event": rng.choice(["viewed_product", "added_to_wishlist"]),
                       "product": rng.choice(["Trail Shoe", "Tote Bag", "Rain Jacket"])})
    for number, profile in enumerate(rng.sample(profiles, len(profiles) // 10), start=1):
        qty = rng.randint(1, 3)
        orders.append({"id": f"order-{number}", "order_id": f"order-{number}",
                       "email": profile["email"],
                       "items": [{"id": "sku-42", "title": "Trail Shoe", "qty": qty,
                                  "price": 89.5, "url": "https://shop.example.com/trail-shoe"}]})
    return events, orders


def _send_activity(
    app: AppOptions, home: Path, profiles: list[dict[str, Any]], seed: int,
    out: Callable[[str], object] | None,
) -> int:
    """Sync the sample events and orders; the API calls made (negative if any failed)."""
    events, orders = make_activity(profiles, seed)
    calls, failed = 0, 0
    for kind, rows in (("events", events), ("purchases", orders)):
        path = home / f"{kind}.jsonl"
        _write_jsonl(path, rows)
        config = SyncConfig(name=kind, object=kind, rate_limits=DEMO_RATE_LIMITS)
        outcome = run_sync(app, config, open_source(str(path)), home=home / ".sailthru-sync")
        calls += outcome.summary.total_calls
        failed += outcome.summary.failed
        if out is not None:
            sent = outcome.summary.counts["sent"]
            out(f"  sent {sent:,} {kind} ({outcome.summary.total_calls:,} API calls)")
    return -1 if failed else calls


def _show(out: Callable[[str], object], title: str, summary: RunSummary) -> None:
    from .cli import format_summary

    out("")
    out(title)
    for line in format_summary(summary):
        out(line)
