"""The bad-input corpus (tests/data/bad_records.jsonl): each bad record fails alone, with a
reason naming the problem, and the good records of its batch still reach Sailthru.

Each corpus line is ``{"id", "kind", "record", "expected", "expected_field"?}``; ``expected``
is a fragment of the error text, or null for a record that looks dangerous but is valid
(and must go through). Values JSON cannot hold are encoded and decoded here:
``{"$float": "nan" | "inf" | "-inf"}``, ``{"$repeat": [text, times]}`` (1 MB strings),
``{"$deep": n}`` (objects nested ``n`` deep), ``{"$bytes_hex": "ff"}`` (bytes; as a line of
a ``sync`` model file, raw bytes such as invalid UTF-8).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, destination_for, make_fake

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.commerce import CartChange, Purchase, PurchaseItem, Return
from sailthru_destination.features.events import Event
from sailthru_destination.features.postbacks import PostbackError, parse_postback
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.results import BatchResult, ExportResult, Status
from sailthru_destination.segment import SegmentAdapter
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport._protocol import sign

CORPUS = Path(__file__).parent / "data" / "bad_records.jsonl"
CASES: list[dict[str, Any]] = [
    json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()
]
SCRIPT = Path(sys.executable).with_name("sailthru-destination")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "sailthru_destination"]
ITEM = {"id": "sku1", "title": "Shoe", "qty": 1, "price": 9.99, "url": "https://x.test/s"}


def decode(value: Any) -> Any:
    """A corpus value with its ``$`` encodings turned into the values they describe."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, arg), = value.items()
        if tag == "$float":
            return float(arg)
        if tag == "$repeat":
            return arg[0] * arg[1]
        if tag == "$bytes_hex":
            return bytes.fromhex(arg)
        if tag == "$deep":
            tree: Any = 1
            for _ in range(arg):
                tree = {"a": tree}
            return tree
    return {k: decode(v) for k, v in value.items()}


def _item(data: dict[str, Any]) -> PurchaseItem:
    return PurchaseItem(**data)


def _user(r: dict[str, Any]) -> ProfileChange:
    return ProfileChange(r["key"], new_properties=r.get("new_properties", {}),
                         new_groups=frozenset(r.get("new_groups", ())), optout=r.get("optout"))


def _event(r: dict[str, Any]) -> Event:
    return Event(r["key"], r.get("key_type", "email"), r["name"], r.get("properties", {}),
                 r["record_id"])


def _purchase(r: dict[str, Any]) -> Purchase:
    return Purchase(order_id=r["order_id"], email=r.get("email"),
                    items=[_item(i) for i in r["items"]],
                    currency_unit=r.get("currency_unit", "dollars"))


def _return(r: dict[str, Any]) -> Return:
    return Return(order_id=r["order_id"], email=r.get("email"),
                  items=[_item(i) for i in r["items"]],
                  currency_unit=r.get("currency_unit", "dollars"), record_id=r.get("record_id"))


def _cart(r: dict[str, Any]) -> CartChange:
    return CartChange(r["user_id"], _item(r["product"]), quantity=r.get("quantity", 1),
                      action=r.get("action", "add"), reminder_time=r.get("reminder_time"),
                      user_key=r.get("user_key", "extid"))


Builder = Callable[[dict[str, Any]], Any]
Sender = Callable[[SailthruDestination, list[Any]], BatchResult]
KINDS: dict[str, tuple[Builder, Sender, list[dict[str, Any]]]] = {
    "user": (_user, lambda d, rs: d.export_profiles(rs), [
        {"key": f"good-u{n}@ok.example.com", "new_properties": {"n": n},
         "new_groups": ["Good"]} for n in range(3)]),
    "event": (_event, lambda d, rs: d.send_events(rs), [
        {"key": "ev@ok.example.com", "name": "viewed", "record_id": f"good-e{n}",
         "properties": {"rid": f"good-e{n}"}} for n in range(3)]),
    "purchase": (_purchase, lambda d, rs: d.send_purchases(rs), [
        {"order_id": f"good-o{n}", "email": "buyer@ok.example.com", "items": [ITEM]}
        for n in range(3)]),
    "return": (_return, lambda d, rs: d.send_returns(rs), [
        {"order_id": "good-o1", "email": "buyer@ok.example.com", "items": [ITEM],
         "record_id": f"good-r{n}"} for n in range(2)]),
    "cart": (_cart, lambda d, rs: d.update_carts(rs), [
        {"user_id": "cart@ok.example.com", "user_key": "email",
         "product": {**ITEM, "id": f"good-k{n}"}} for n in range(2)]),
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSailthru]:
    with make_fake(rate_limits={"default": 100_000}) as running:
        yield running


@pytest.fixture(scope="module")
def destination(fake: FakeSailthru, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    SailthruDestination
]:
    with destination_for(fake, tmp_path_factory.mktemp("locks")) as dest:
        # The users the good events, orders and carts belong to.
        for email in ("ev@ok.example.com", "buyer@ok.example.com", "cart@ok.example.com",
                      "emptycart@ok.example.com"):
            assert dest.export_profile(ProfileChange(email, new_properties={"ok": 1})).ok
        yield dest


def _cases(kind: str) -> list[dict[str, Any]]:
    return [case for case in CASES if case["kind"] == kind]


def _assert_failed_as_stated(case: dict[str, Any], result: ExportResult) -> None:
    where = case["id"]
    if case["expected"] is None:
        assert result.ok, f"{where}: {result}"
        # Applied or skipped, but never in silence: the detail says what was left out.
        assert case.get("expected_detail", "") in result.detail, f"{where}: {result.detail!r}"
        return
    assert result.status is Status.FAILED, f"{where}: {result}"
    assert result.error is not None
    assert case["expected"] in result.detail, f"{where}: {result.detail!r}"
    if "expected_field" in case:
        assert result.error.field == case["expected_field"], f"{where}: {result.error}"


def test_the_corpus_covers_every_kind_with_forty_or_more_cases() -> None:
    kinds = Counter(case["kind"] for case in CASES)
    assert len(CASES) >= 40
    assert len({case["id"] for case in CASES}) == len(CASES)
    assert set(kinds) >= {
        "user", "event", "purchase", "return", "cart", "segment", "postback", "sync"
    }
    assert any(case["expected"] is None and "DROP TABLE" in json.dumps(case) for case in CASES)


@pytest.mark.parametrize("kind", ["user", "event", "purchase", "return", "cart"])
def test_each_bad_record_fails_with_its_reason_while_the_rest_of_the_batch_goes_through(
    kind: str, fake: FakeSailthru, destination: SailthruDestination
) -> None:
    build, send, good = KINDS[kind]
    cases = _cases(kind)
    # Good records first, between and after the bad ones.
    records: list[tuple[dict[str, Any] | None, Any]] = []
    for n, case in enumerate(cases):
        if n < len(good):
            records.append((None, build(good[n])))
        records.append((case, build(decode(case["record"]))))
    records.extend((None, build(g)) for g in good[len(cases):])
    batch = send(destination, [record for _, record in records])
    assert len(batch) == len(records)
    for (stated, _), result in zip(records, batch.results, strict=True):
        if stated is None:
            assert result.ok, result
        else:
            _assert_failed_as_stated(stated, result)
    _assert_good_ones_applied(kind, fake, good)


def _assert_good_ones_applied(kind: str, fake: FakeSailthru, good: list[dict[str, Any]]) -> None:
    if kind == "user":
        for record in good:
            user = fake.find_user(email=record["key"])
            assert user is not None
            assert user["vars"]["n"] == record["new_properties"]["n"]
            assert "Good" in user["lists"]
        injected = fake.find_user(email="inject@ok.example.com")
        assert injected is not None
        assert "a'; DROP TABLE users;--" in injected["lists"]
        assert "a'; DROP TABLE users;--" in [item["name"] for item in fake.lists]
    elif kind == "event":
        posted = Counter(e["vars"].get("rid") for e in fake.events)
        assert all(posted[r["record_id"]] == 1 for r in good)
        assert len(fake.events) == len(good)
    elif kind == "purchase":
        orders = Counter(p["purchase_keys"].get("extid") for p in fake.purchases)
        assert orders == Counter(r["order_id"] for r in good)
    elif kind == "return":
        assert len(fake.returns) == len(good)
    else:
        cart = fake.find_user(email="cart@ok.example.com")
        assert cart is not None
        lines = cart["purchase_incomplete"]["items"]
        assert sorted(line["id"] for line in lines) == ["good-k0", "good-k1"]


def test_each_bad_segment_message_fails_with_its_reason_and_the_good_ones_go_through(
    fake: FakeSailthru, destination: SailthruDestination
) -> None:
    cases = _cases("segment")
    good = [{"type": "identify", "messageId": f"good-s{n}", "userId": f"good-su{n}",
             "traits": {"email": f"good-s{n}@ok.example.com", "n": n}} for n in range(len(cases))]
    messages: list[tuple[dict[str, Any] | None, Any]] = []
    for case, ok in zip(cases, good, strict=True):
        messages += [(None, ok), (case, decode(case["record"]))]
    adapter = SegmentAdapter(destination, {"customer_id": "cust-1"})
    batch = adapter.process_batch([message for _, message in messages])
    assert len(batch) == len(messages)
    for (stated, _), result in zip(messages, batch.results, strict=True):
        if stated is None:
            assert result.ok, result
        else:
            _assert_failed_as_stated(stated, result)
    for n in range(len(good)):
        user = fake.find_user(extid=f"good-su{n}")
        assert user is not None
        assert (user["keys"]["email"], user["vars"]["n"]) == (f"good-s{n}@ok.example.com", n)
    subscriber = fake.find_user(email="subscriber@ok.example.com")
    assert subscriber is not None
    assert "a'; DROP TABLE users;--" in subscriber["lists"]


def test_each_bad_postback_is_refused_with_its_reason_and_good_ones_parse() -> None:
    good = {"action": "optout", "email": "p@ok.example.com", "optout": "1", "mode": "all",
            "api_key": KEY}
    parsed = 0
    for case in _cases("postback"):
        record = decode(case["record"])
        params = {k: str(v) for k, v in record["params"].items()}
        if record["sign"]:
            params["sig"] = sign(params, SECRET)
        with pytest.raises(PostbackError) as caught:
            parse_postback(params, SECRET)
        assert case["expected"] in str(caught.value), case["id"]
        assert SECRET not in str(caught.value)
        # The good postback next to it goes through.
        assert parse_postback({**good, "sig": sign(good, SECRET)}, SECRET) is not None
        parsed += 1
    assert parsed == len(_cases("postback"))


def _write_model(folder: Path, record: dict[str, Any]) -> Path:
    lines = [line if isinstance(line, bytes) else str(line).encode("utf-8")
             for line in decode(record["lines"])]
    path: Path = folder / str(record["file"])
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _good_emails(record: dict[str, Any]) -> set[str]:
    emails: set[str] = set()
    for number, line in enumerate(record["lines"], start=1):
        if number != record["bad_line"] and isinstance(line, str):
            emails.update(re.findall(r"[\w.-]+@ok\.example\.com", line))
    return emails


@pytest.mark.parametrize("case", _cases("sync"), ids=lambda case: case["id"])
def test_a_bad_row_in_a_model_fails_alone_through_the_sync_runner(
    case: dict[str, Any], tmp_path: Path
) -> None:
    record = case["record"]
    model = _write_model(tmp_path, record)
    with make_fake(rate_limits={"default": 100_000}) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAILTHRU_")}
        env.update(SAILTHRU_API_KEY=KEY, SAILTHRU_API_SECRET=SECRET, SAILTHRU_API_URL=fake.url)
        result = subprocess.run([*COMMAND, "sync", str(model), "--no-progress"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        line = next(x for x in result.stdout.splitlines() if x.startswith("Report: "))
        errors_file = tmp_path / line.removeprefix("Report: ") / "errors.jsonl"
        errors = [json.loads(x) for x in errors_file.read_text(encoding="utf-8").splitlines()]
        assert [e["where"] for e in errors] == [f"line {record['bad_line']}"]
        assert case["expected"] in errors[0]["reason"]
        if "expected_field" in case:
            assert errors[0]["field"] == case["expected_field"]
        present = {u["keys"].get("email") for u in fake.users.values()}
        assert present == _good_emails(record)
