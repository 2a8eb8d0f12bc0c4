"""Profile export against the fake Sailthru: one call per change, lists, opt-out, deletes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import destination_for, make_fake, posted_payloads

from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.results import Status
from sailthru_destination.testing import FakeSailthru, Faults


@pytest.fixture
def fake() -> Any:
    # Waits are recorded, not slept, so pacing is off here: give the fake room.
    with make_fake(seed=7, rate_limits={"default": 100_000}) as server:
        yield server


def change(key: Any, new: dict[str, Any] | None = None, **kwargs: Any) -> ProfileChange:
    return ProfileChange(key=key, new_properties=new or {}, **kwargs)


def test_a_new_profile_costs_one_user_post_with_vars_and_lists(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(change("seed@example.com", {"x": 1}, new_groups={"VIP"}))
        before = fake.calls[("POST", "user")]
        result = dest.export_profile(
            change(
                "Ann@Example.com",
                {"first_name": "Ann", "address": {"city": "Oslo"}, "vip": True},
                new_groups={"VIP"},
                record_id="42",
            )
        )
    assert result.status is Status.CREATED
    assert result.record_id == "42"
    assert fake.calls[("POST", "user")] - before == 1
    user = fake.find_user(email="ann@example.com")
    assert user is not None
    assert user["vars"] == {"first_name": "Ann", "address_city": "Oslo", "vip": True}
    assert set(user["lists"]) == {"VIP"}


def test_an_unchanged_profile_costs_zero_calls(fake: FakeSailthru, tmp_path: Path) -> None:
    props = {"first_name": "Ann", "signup_date": datetime(2024, 5, 1, tzinfo=timezone.utc)}
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(change("ann@example.com", props, new_groups={"VIP"}))
        calls_before = sum(fake.calls.values())
        result = dest.export_profile(
            ProfileChange(
                key="ann@example.com",
                old_properties=props,
                new_properties=dict(props),
                old_groups={"VIP"},
                new_groups={"VIP"},
            )
        )
    assert result.status is Status.SKIPPED
    assert "unchanged" in result.detail
    assert sum(fake.calls.values()) == calls_before


def test_removed_properties_are_cleared_and_falsy_values_are_kept(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    old = {"first_name": "Ann", "score": 5, "vip": True, "nick": "a"}
    new = {"first_name": "Ann", "score": 0, "vip": False, "nick": ""}
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(change("ann@example.com", {**old, "plan": "gold"}))
        result = dest.export_profile(
            ProfileChange(
                "ann@example.com", old_properties={**old, "plan": "gold"}, new_properties=new
            )
        )
        payload = posted_payloads(dest)[-1]
    assert result.status is Status.UPDATED
    assert payload["vars"] == {"score": 0, "vip": False, "nick": "", "plan": ""}
    user = fake.find_user(email="ann@example.com")
    assert user is not None
    assert user["vars"]["score"] == 0
    assert user["vars"]["vip"] is False
    assert user["vars"].get("plan", "") == ""


def test_joining_and_leaving_groups_sends_only_the_changed_lists(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path, list_prefix="cdp ") as dest:
        dest.export_profile(change("bo@example.com", {"a": 1}, new_groups={"A", "B"}))
        dest.export_profile(
            ProfileChange(
                "bo@example.com",
                old_properties={"a": 1},
                new_properties={"a": 1},
                old_groups={"A", "B"},
                new_groups={"B", "C"},
            )
        )
        payload = posted_payloads(dest)[-1]
    assert payload["lists"] == {"cdp A": 0, "cdp C": 1}
    assert "vars" not in payload
    user = fake.find_user(email="bo@example.com")
    assert user is not None
    assert set(user["lists"]) == {"cdp B", "cdp C"}


def test_every_exported_user_joins_the_default_list(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path, default_list="Everyone") as dest:
        batch = dest.export_profiles(change(f"u{i}@example.com", {"i": i}) for i in range(5))
    assert batch.ok
    for i in range(5):
        user = fake.find_user(email=f"u{i}@example.com")
        assert user is not None
        assert "Everyone" in user["lists"]


def test_a_missing_list_is_created_once_and_then_cached(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as dest:
        for i in range(5):
            dest.export_profile(change(f"u{i}@example.com", {"i": i}, new_groups={"New List"}))
    assert [r["name"] for r in fake.lists].count("New List") == 1
    assert fake.calls[("POST", "list")] == 1
    # one GET of all lists, then one check of the missing list inside the lock
    assert fake.calls[("GET", "list")] == 2


def test_update_mode_skips_users_that_do_not_exist(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as seed:
        seed.export_profile(change("known@example.com", {"a": 1}))
    with destination_for(fake, tmp_path, sync_mode="update") as dest:
        missing = dest.export_profile(change("nobody@example.com", {"a": 1}))
        known = dest.export_profile(change("known@example.com", {"a": 2}))
    assert missing.status is Status.SKIPPED
    assert "update mode" in missing.detail
    assert fake.find_user(email="nobody@example.com") is None
    assert known.status is Status.UPDATED
    user = fake.find_user(email="known@example.com")
    assert user is not None
    assert user["vars"]["a"] == 2


def test_an_email_change_moves_the_existing_user_to_the_new_email(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(change("old@example.com", {"email": "old@example.com", "a": 1}))
        sid = fake.find_user(email="old@example.com")["keys"]["sid"]  # type: ignore[index]
        result = dest.export_profile(
            ProfileChange(
                "new@example.com",
                old_properties={"email": "old@example.com", "a": 1},
                new_properties={"email": "new@example.com", "a": 2},
            )
        )
    assert result.status is Status.UPDATED
    assert len(fake.users) == 1
    user = fake.find_user(email="new@example.com")
    assert user is not None
    assert user["keys"]["sid"] == sid
    assert user["vars"]["a"] == 2
    assert fake.find_user(email="old@example.com") is None


def test_an_email_change_to_an_email_already_in_sailthru_updates_that_user(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(change("old@example.com", {"a": 1}))
        dest.export_profile(change("taken@example.com", {"b": 1}))
        result = dest.export_profile(
            ProfileChange("taken@example.com", old_key="old@example.com", new_properties={"a": 3})
        )
    assert result.status is Status.UPDATED
    assert len(fake.users) == 2
    user = fake.find_user(email="taken@example.com")
    assert user is not None
    assert user["vars"]["a"] == 3


def test_matching_on_extid_sets_the_email_key(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path, match_key="extid") as dest:
        result = dest.export_profile(change("cust-1", {"email": "Cust@Example.com", "a": 1}))
    assert result.status is Status.CREATED
    user = fake.find_user(extid="cust-1")
    assert user is not None
    assert user["keys"]["email"] == "cust@example.com"
    assert user["vars"] == {"a": 1}


def test_matching_on_sid_updates_that_user(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as seed:
        seed.export_profile(change("sid@example.com", {"a": 1}))
    sid = fake.find_user(email="sid@example.com")["keys"]["sid"]  # type: ignore[index]
    with destination_for(fake, tmp_path, match_key="sid") as dest:
        result = dest.export_profile(
            ProfileChange(sid, old_properties={"a": 1}, new_properties={"a": 9})
        )
    assert result.status is Status.UPDATED
    assert fake.find_user(sid=sid)["vars"]["a"] == 9  # type: ignore[index]


def test_opt_out_comes_from_the_destination_or_the_record(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path, optout="basic") as dest:
        dest.export_profile(change("a@example.com", {"x": 1}))
        dest.export_profile(change("b@example.com", {"x": 1}, optout="all"))
        bad = dest.export_profile(change("c@example.com", {"x": 1}, optout="sometimes"))
    assert fake.find_user(email="a@example.com")["optout_email"] == "basic"  # type: ignore[index]
    assert fake.find_user(email="b@example.com")["optout_email"] == "all"  # type: ignore[index]
    assert bad.status is Status.FAILED
    assert bad.error is not None
    assert bad.error.field == "optout"
    assert "'none', 'all', 'basic', 'blast'" in bad.error.reason


def test_delete_behaviour_nothing_keeps_the_user(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(change("a@example.com", {"x": 1}))
        result = dest.export_profile(change("a@example.com", to_delete=True))
    assert result.status is Status.SKIPPED
    assert fake.find_user(email="a@example.com") is not None


def test_delete_behaviour_clear_empties_vars_and_synced_lists(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    props = {"x": 1, "nested": {"y": 2}}
    with destination_for(fake, tmp_path, delete_behavior="clear") as dest:
        dest.export_profile(change("a@example.com", props, new_groups={"G1", "G2"}))
        result = dest.export_profile(
            ProfileChange(
                "a@example.com", old_properties=props, old_groups={"G1", "G2"}, to_delete=True
            )
        )
        missing = dest.export_profile(change("nobody@example.com", to_delete=True))
    assert result.status is Status.CLEARED
    user = fake.find_user(email="a@example.com")
    assert user is not None
    assert all(v in ("", None) for v in user["vars"].values())
    assert not user["lists"]
    assert missing.status is Status.SKIPPED
    assert fake.find_user(email="nobody@example.com") is None


def test_delete_is_reported_only_when_seen_gone(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path, delete_behavior="delete") as dest:
        dest.export_profile(change("a@example.com", {"x": 1}))
        result = dest.export_profile(change("a@example.com", to_delete=True))
        again = dest.export_profile(change("a@example.com", to_delete=True))
    assert result.status is Status.DELETED
    assert fake.find_user(email="a@example.com") is None
    assert again.status is Status.DELETED  # 404 on DELETE: already gone, and verified


def test_a_delete_that_never_happens_fails_with_a_privacy_message(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    sleeps: list[float] = []
    with destination_for(
        fake, tmp_path, sleeps=sleeps, delete_behavior="delete", delete_attempts=3
    ) as dest:
        dest.export_profile(change("a@example.com", {"x": 1}))
        fake.faults = Faults(false_ok_delete_rate=1.0)
        result = dest.export_profile(change("a@example.com", to_delete=True, record_id="r-1"))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.retryable
    assert "NOT deleted" in result.error.reason
    assert fake.find_user(email="a@example.com") is not None
    assert fake.calls[("DELETE", "user")] == 3
    # pacing also sleeps a little; the verifier's backoff waits are the long ones
    assert [s for s in sleeps if s >= 0.5] == [0.5, 1.0]


def test_a_false_ok_delete_is_retried_until_the_user_is_gone(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path, delete_behavior="delete") as dest:
        dest.export_profiles(change(f"u{i}@example.com", {"i": i}) for i in range(40))
        fake.faults = Faults(false_ok_delete_rate=0.5)
        batch = dest.export_profiles(change(f"u{i}@example.com", to_delete=True) for i in range(40))
    assert batch.counts["deleted"] + batch.counts["failed"] == 40
    assert batch.counts["deleted"] >= 38
    assert fake.calls[("DELETE", "user")] > 40
    for result in batch.results:
        if result.status is Status.DELETED:
            assert fake.find_user(email=result.record_id) is None


def test_a_batch_keeps_going_past_bad_records_and_names_them(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path) as dest:
        batch = dest.export_profiles(
            [
                change("good1@example.com", {"a": 1}),
                change("not-an-email", {"a": 1}, record_id="bad-email"),
                change("good2@example.com", {"a": float("nan")}, record_id="nan"),
                change("good3@example.com", {"a": 3}),
            ]
        )
    statuses = [str(r.status) for r in batch.results]
    assert statuses == ["created", "failed", "failed", "created"]
    errors = {e.record_id: e for e in batch.errors}
    assert errors["bad-email"].field == "key"
    assert errors["nan"].field == "a"


def test_profiles_without_a_required_consent_are_skipped_without_a_call(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path, required_consents={"email_marketing", "sms"}) as dest:
        batch = dest.export_profiles(
            [
                change("yes@example.com", {"a": 1}, consents={"email_marketing"}),
                change("no@example.com", {"a": 1}, consents={"analytics"}),
                change("none@example.com", {"a": 1}),
                change("sms@example.com", {"a": 1}, consents={"sms", "analytics"}),
            ]
        )
    assert [str(r.status) for r in batch.results] == ["created", "skipped", "skipped", "created"]
    assert batch.results[1].detail == "no consent to any of: email_marketing, sms"
    assert fake.find_user(email="no@example.com") is None
    assert fake.find_user(email="none@example.com") is None
    assert fake.calls[("POST", "user")] == 2
