"""The chaos workload: many processes of many threads against a fake Sailthru with every fault on.

Shared by ``tests/chaos`` (CI size) and ``bench/chaos.py`` (full size). The fake runs in the
calling process with, at once, connection drops, 5xx, false-200 deletes, 429 bursts,
stale reads, list races and latency. ``processes`` worker processes of ``threads``
threads each then run two phases:

1. every profile is exported into one or two of ``lists`` lists that do not exist yet;
2. 10 % of the profiles change, 5 % move between lists, 5 % are deleted, while events,
   purchases and cart additions are sent.

:func:`verify` compares the fake's final state with the state the input implies and
lists every broken promise: a record neither applied nor reported with a reason, a
duplicate list, a user reported deleted but present, an event or purchase posted twice,
a record that failed on a 429. It also counts the events and purchases whose outcome was
left unknown (reported failed, and maybe applied): purchases are read back, so none should.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.commerce import CartChange, Purchase, PurchaseItem
from sailthru_destination.features.events import Event
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.options import AppOptions, DeleteBehavior, DestinationOptions
from sailthru_destination.results import BatchResult
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi
from sailthru_destination.transport.calllog import CallLog, CallRecord

KEY = "chaos-key"
SECRET = "chaos-secret-0123456789"

# The production rates of SPEC section 6, ten times over, all at once.
FAULTS = Faults(
    connection_error_rate=0.026,
    false_ok_delete_rate=0.067,
    server_error_rate=0.01,
    rate_limit_burst=0.02,
    stale_read_window=0.3,
    list_race_window=0.2,
    # Not a production figure: a gateway 504 after the write was applied, as often as a 500.
    error_after_apply_rate=0.01,
)
RETRY = RetryPolicy(max_attempts=8, max_total=60.0, initial_backoff=0.02, max_backoff=0.5)

# Roles by profile number modulo 20: what phase 2 does to it, and what it receives.
_CHANGED = (0, 1)
_MOVED = (2,)
_DELETED = (3,)
_CART_USERS = (5, 6)
_BUYERS = (7, 8, 9, 10, 11, 12)
_TIERS = ("gold", "silver", "bronze")


@dataclass(frozen=True)
class Size:
    """How big a chaos run is, and how the fake answers."""

    profiles: int
    events: int
    purchases: int
    carts: int
    lists: int = 30
    processes: int = 4
    threads: int = 20
    latency: float = 0.005
    rate_limits: dict[str, float] | None = None


# At Sailthru's default rate limits (``rate_limits=None``), like production.
CI = Size(profiles=2_000, events=400, purchases=160, carts=160)
FULL = Size(profiles=20_000, events=5_000, purchases=2_000, carts=2_000)


@dataclass
class Outcome:
    """What a chaos run did and every broken promise found afterwards."""

    size: Size
    seconds: dict[str, float] = field(default_factory=dict)
    records: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    rate_limited_attempts: int = 0
    failed_on_429: int = 0
    failed_on_429_by_kind: Counter[str] = field(default_factory=Counter)
    fake_calls: int = 0
    lists: int = 0
    duplicate_lists: int = 0
    deleted_but_present: int = 0
    duplicate_events: int = 0
    duplicate_purchases: int = 0
    unknown_events: int = 0
    unknown_purchases: int = 0
    in_doubt_purchases: int = 0  # reported in doubt, absent: a later run settles them
    verified_profiles: int = 0
    verified_carts: int = 0
    problems: list[str] = field(default_factory=list)


# -- the input ------------------------------------------------------------------------------


def email(i: int) -> str:
    """The email of profile ``i``."""
    return f"c{i}@chaos.example.com"


def list_name(n: int) -> str:
    """The ``n``-th list (the prefix checks that quoting survives)."""
    return f"Chaos's List {n:02d}"


def _groups(i: int, size: Size, moved: bool = False) -> frozenset[str]:
    first = (i + 1) % size.lists if moved else i % size.lists
    return frozenset({list_name(first), list_name((i * 7 + 3) % size.lists)})


def _props(i: int, changed: bool = False) -> dict[str, Any]:
    return {"n": i, "tier": _TIERS[(i + changed) % 3], "v": int(changed)}


def _first_change(i: int, size: Size) -> ProfileChange:
    return ProfileChange(email(i), new_properties=_props(i), new_groups=_groups(i, size))


def _second_change(i: int, size: Size) -> ProfileChange | None:
    role = i % 20
    old = {"old_properties": _props(i), "old_groups": _groups(i, size)}
    if role in _DELETED:
        return ProfileChange(email(i), to_delete=True, **old)  # type: ignore[arg-type]
    if role in _CHANGED:
        return ProfileChange(
            email(i), new_properties=_props(i, True), new_groups=_groups(i, size), **old  # type: ignore[arg-type]
        )
    if role in _MOVED:
        return ProfileChange(
            email(i), new_properties=_props(i), new_groups=_groups(i, size, True), **old  # type: ignore[arg-type]
        )
    return None


def _users_with(size: Size, roles: tuple[int, ...]) -> list[int]:
    return [i for i in range(size.profiles) if i % 20 in roles]


def _event(k: int, size: Size) -> Event:
    user = (k * 13) % size.profiles
    if user % 20 in _DELETED:
        user = (user + 1) % size.profiles
    rid = f"e{k}"
    return Event(email(user), "email", "chaos viewed", {"rid": rid, "page": k % 50}, rid)


def _purchase(k: int, size: Size) -> Purchase:
    buyers = _users_with(size, _BUYERS)
    item = PurchaseItem(
        id=f"sku{k % 40}",
        title=f"Thing {k % 40}",
        qty=1 + k % 3,
        price=f"{5 + k % 20}.99",
        url=f"https://shop.example.com/p/{k % 40}",
    )
    return Purchase(order_id=f"o{k}", email=email(buyers[k % len(buyers)]), items=[item])


def _cart(k: int, size: Size) -> tuple[int, CartChange]:
    users = _users_with(size, _CART_USERS)
    user = users[k % len(users)]
    sku = f"cart{k % 7}"
    product = PurchaseItem(
        id=sku, title=f"Cart thing {k % 7}", qty=1, price="3.50",
        url=f"https://shop.example.com/c/{k % 7}",
    )
    change = CartChange(
        email(user), product, quantity=1 + k % 2, user_key="email", record_id=f"k{k}"
    )
    return user, change


# -- one worker process ---------------------------------------------------------------------


def _share(count: int, worker: int, workers: int) -> range:
    return range(worker, count, workers)


def _rows(kind: str, batch: BatchResult) -> Iterator[list[Any]]:
    for result in batch.results:
        error = result.error
        yield [
            kind,
            result.record_id,
            str(result.status),
            result.detail,
            bool(error and error.retryable),
            error.code if error else None,
        ]


def _worker(url: str, size: Size, phase: int, worker: int, lock_dir: str, out: str) -> None:
    """One process: its share of the phase's records, its results written to ``out``."""
    attempts: Counter[str] = Counter()

    def count(record: CallRecord) -> None:
        attempts["all"] += 1
        if record.status == 429:
            attempts["429"] += 1

    app = AppOptions(api_key=KEY, api_secret=SECRET, api_url=url, read_timeout=10.0)
    opts = DestinationOptions(
        concurrency=size.threads, lock_dir=lock_dir, delete_behavior=DeleteBehavior.DELETE
    )
    api = SailthruApi(
        app,
        concurrency=size.threads,
        retry=RETRY,
        call_log=CallLog(max_records=0, sink=count),
        rate_limits=size.rate_limits,
    )
    workers = size.processes
    rows: list[list[Any]] = []
    with SailthruDestination(app, opts, api=api) as dest:
        if phase == 1:
            changes = [_first_change(i, size) for i in _share(size.profiles, worker, workers)]
            rows.extend(_rows("p1", dest.export_profiles(changes)))
        else:
            second = [_second_change(i, size) for i in _share(size.profiles, worker, workers)]
            events = [_event(k, size) for k in _share(size.events, worker, workers)]
            purchases = [_purchase(k, size) for k in _share(size.purchases, worker, workers)]
            # A user's cart changes stay in one process: its per-user lock orders them.
            carts = [
                change
                for user, change in (_cart(k, size) for k in range(size.carts))
                if user % workers == worker
            ]
            with ThreadPoolExecutor(max_workers=4) as pool:
                jobs = [
                    ("p2", pool.submit(dest.export_profiles, [c for c in second if c])),
                    ("event", pool.submit(dest.send_events, events)),
                    ("purchase", pool.submit(dest.send_purchases, purchases)),
                    ("cart", pool.submit(dest.update_carts, carts)),
                ]
                for kind, job in jobs:
                    rows.extend(_rows(kind, job.result()))
    Path(out).write_text(
        json.dumps({"rows": rows, "attempts": attempts["all"], "429": attempts["429"]}),
        encoding="utf-8",
    )


# -- the run --------------------------------------------------------------------------------


def run(size: Size, workdir: Path, *, seed: int = 1) -> Outcome:
    """Run the workload at ``size`` against a faulty fake, then verify the fake's state."""
    outcome = Outcome(size)
    with FakeSailthru(
        api_key=KEY,
        api_secret=SECRET,
        faults=FAULTS,
        latency=size.latency,
        rate_limits=size.rate_limits,
        seed=seed,
    ) as fake:
        results: list[list[Any]] = []
        for phase in (1, 2):
            started = time.monotonic()
            results.extend(_run_phase(fake.url, size, phase, workdir, outcome))
            outcome.seconds[f"phase {phase}"] = time.monotonic() - started
        verify(fake, size, results, outcome)
    return outcome


def _run_phase(
    url: str, size: Size, phase: int, workdir: Path, outcome: Outcome
) -> list[list[Any]]:
    ctx = multiprocessing.get_context("spawn")
    lock_dir = workdir / "locks"
    lock_dir.mkdir(exist_ok=True)
    outs = [workdir / f"phase{phase}-{w}.json" for w in range(size.processes)]
    procs = [
        ctx.Process(
            target=_worker, args=(url, size, phase, w, str(lock_dir), str(outs[w])), daemon=True
        )
        for w in range(size.processes)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(600)
    rows: list[list[Any]] = []
    for proc, out in zip(procs, outs, strict=True):
        if proc.exitcode != 0 or not out.exists():
            outcome.problems.append(f"phase {phase}: worker exited with {proc.exitcode}")
            continue
        data = json.loads(out.read_text(encoding="utf-8"))
        rows.extend(data["rows"])
        outcome.attempts += data["attempts"]
        outcome.rate_limited_attempts += data["429"]
    return rows


# -- the check ------------------------------------------------------------------------------


def _expected_counts(size: Size) -> Counter[str]:
    second = sum(_second_change(i, size) is not None for i in range(size.profiles))
    return Counter(
        p1=size.profiles, p2=second, event=size.events, purchase=size.purchases, cart=size.carts
    )


def verify(fake: FakeSailthru, size: Size, rows: list[list[Any]], outcome: Outcome) -> None:
    """Compare the fake's state with what ``rows`` (every record's result) promise."""
    problems = outcome.problems
    by_kind: dict[str, dict[str, list[Any]]] = {}
    for row in rows:
        kind, rid, status, detail, _retryable, code = row
        outcome.records[kind] += 1
        outcome.statuses[f"{kind} {status}"] += 1
        if rid in by_kind.setdefault(kind, {}):
            problems.append(f"{kind} {rid}: two results")
        by_kind[kind][rid] = row
        if status == "failed":
            outcome.failures[_reason_class(detail)] += 1
            if not detail:
                problems.append(f"{kind} {rid}: failed without a reason")
            if code == 43:
                # Judged apart (Outcome.failed_on_429): reported with a reason, but the
                # pacing was meant to keep every 429 absorbable by retries.
                outcome.failed_on_429 += 1
                outcome.failed_on_429_by_kind[kind] += 1
    expected = _expected_counts(size)
    if outcome.records != expected:
        problems.append(f"results per kind {dict(outcome.records)} != input {dict(expected)}")
    users = fake.users
    by_email = {u["keys"].get("email"): u for u in users.values()}
    _check_lists(fake, size, outcome)
    _check_profiles(by_email, size, by_kind, outcome)
    _check_activity(fake, by_kind, outcome)
    _check_carts(by_email, size, by_kind, outcome)
    outcome.fake_calls = sum(fake.calls.values())


def _ok(row: list[Any] | None) -> bool:
    return row is not None and row[2] != "failed"


def _reason_class(detail: str) -> str:
    """A failure reason without the record-specific parts, for counting."""
    text = detail.split(":")[0] if detail else "(no reason)"
    return text[:70]


def _check_lists(fake: FakeSailthru, size: Size, outcome: Outcome) -> None:
    names = Counter(record["name"] for record in fake.lists)
    outcome.lists = len(names)
    outcome.duplicate_lists = sum(n - 1 for n in names.values())
    for name, n in names.items():
        if n > 1:
            outcome.problems.append(f"list {name!r} exists {n} times")
    wanted = {list_name(n) for n in range(size.lists)}
    if not wanted <= set(names):
        outcome.problems.append(f"lists never created: {sorted(wanted - set(names))}")


def _check_profiles(
    by_email: dict[str, dict[str, Any]],
    size: Size,
    by_kind: dict[str, dict[str, list[Any]]],
    outcome: Outcome,
) -> None:
    first, second = by_kind.get("p1", {}), by_kind.get("p2", {})
    for i in range(size.profiles):
        address = email(i)
        change = _second_change(i, size)
        user = by_email.get(address)
        if change is not None and change.to_delete:
            result = second.get(address)
            if result is not None and result[2] == "deleted" and user is not None:
                outcome.deleted_but_present += 1
                outcome.problems.append(f"{address} reported deleted but present")
            continue
        if not _ok(first.get(address)) or (change is not None and not _ok(second.get(address))):
            continue  # reported failed with a reason (checked above)
        final = change or _first_change(i, size)
        if user is None:
            outcome.problems.append(f"{address} reported applied but absent")
            continue
        wanted_vars = dict(final.new_properties)
        got = {k: user["vars"].get(k) for k in wanted_vars}
        if got != wanted_vars or set(user["lists"]) != set(final.new_groups):
            outcome.problems.append(
                f"{address}: vars {got} lists {sorted(user['lists'])}, expected "
                f"{wanted_vars} {sorted(final.new_groups)}"
            )
            continue
        outcome.verified_profiles += 1


def _check_activity(
    fake: FakeSailthru, by_kind: dict[str, dict[str, list[Any]]], outcome: Outcome
) -> None:
    events = Counter(str(e["vars"].get("rid")) for e in fake.events)
    orders = Counter(str(p["purchase_keys"].get("extid")) for p in fake.purchases)
    outcome.duplicate_events = sum(n - 1 for n in events.values())
    outcome.duplicate_purchases = sum(n - 1 for n in orders.values())
    for kind, posted in (("event", events), ("purchase", orders)):
        for key, n in posted.items():
            if n > 1:
                outcome.problems.append(f"{kind} {key} posted {n} times")
        for rid, row in by_kind.get(kind, {}).items():
            if row[2] == "sent" and posted[rid] != 1:
                outcome.problems.append(f"{kind} {rid} reported sent, posted {posted[rid]} times")
            if kind == "purchase" and row[2] == "failed" and row[3].startswith("in doubt"):
                # Its post had no clear answer and a read missed it (issue 22): late, never
                # doubled; a later run reads it back and settles it.
                outcome.in_doubt_purchases += 1
                continue
            if row[2] == "failed" and (posted[rid] or _left_unknown(row[3])):
                if kind == "event":
                    outcome.unknown_events += 1
                else:
                    outcome.unknown_purchases += 1


def _left_unknown(detail: str) -> bool:
    """Whether a failure says the record may have been applied (its outcome is unknown)."""
    return "may or may not have been applied" in detail or any(
        f"marked {state!r}" in detail for state in ("unknown", "pending")
    )


def _check_carts(
    by_email: dict[str, dict[str, Any]],
    size: Size,
    by_kind: dict[str, dict[str, list[Any]]],
    outcome: Outcome,
) -> None:
    results = by_kind.get("cart", {})
    wanted: dict[int, Counter[str]] = {}
    failed: set[int] = set()
    for k in range(size.carts):
        user, change = _cart(k, size)
        row = results.get(f"k{k}")
        if not _ok(row):
            failed.add(user)
            continue
        wanted.setdefault(user, Counter())[change.product.id] += change.quantity
    for user, items in wanted.items():
        if user in failed:
            continue
        profile = by_email.get(email(user))
        cart = (profile or {}).get("purchase_incomplete") or {}
        got = Counter({line["id"]: line["qty"] for line in cart.get("items", [])})
        if got != items:
            outcome.problems.append(f"cart of {email(user)}: {dict(got)}, expected {dict(items)}")
            continue
        outcome.verified_carts += 1
