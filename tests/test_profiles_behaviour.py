"""Profile export behaviours the mutation run found unpinned (issue 18).

Each test states what a user of the library would notice if the behaviour broke: a user
written or not, a delete reported done while the person is still in Sailthru, a result's
status and detail, a payload Sailthru receives.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import app_for, destination_for, make_fake, posted_payloads

from sailthru_destination.features.profiles import ProfileChange, ProfileExporter
from sailthru_destination.once.lists import ListRegistry
from sailthru_destination.once.locks import LocalLock
from sailthru_destination.options import DestinationOptions
from sailthru_destination.results import Status
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi


@pytest.fixture
def fake() -> Any:
    # Waits are recorded, not slept, so pacing is off here: give the fake room.
    with make_fake(seed=7, rate_limits={"default": 100_000}) as server:
        yield server


def test_an_email_change_from_an_email_sailthru_never_had_creates_the_user(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path) as dest:
        result = dest.export_profile(
            ProfileChange("new@example.com", old_key="ghost@example.com", new_properties={"a": 1})
        )
    assert result.status is Status.CREATED
    assert result.detail == "old email unknown to Sailthru: user created"
    user = fake.find_user(email="new@example.com")
    assert user is not None
    assert user["vars"] == {"a": 1}
    assert fake.find_user(email="ghost@example.com") is None


def test_in_update_mode_an_email_change_from_an_unknown_email_writes_nothing(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path, sync_mode="update") as dest:
        result = dest.export_profile(
            ProfileChange("new@example.com", old_key="ghost@example.com", new_properties={"a": 1})
        )
    assert result.status is Status.SKIPPED
    assert result.detail == "no user with the old or new email (update mode)"
    assert fake.users == {}


def test_an_email_change_reports_which_user_it_moved(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(ProfileChange("old@example.com", new_properties={"a": 1}))
        moved = dest.export_profile(
            ProfileChange("new@example.com", old_key="old@example.com", new_properties={"a": 2})
        )
    assert moved.status is Status.UPDATED
    assert moved.detail == "email changed"
    assert fake.find_user(email="old@example.com") is None
    assert fake.find_user(email="new@example.com")["vars"] == {"a": 2}  # type: ignore[index]


def test_a_delete_by_extid_is_not_done_while_the_persons_email_is_still_in_sailthru(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # The person's email belongs to another Sailthru profile (made before the extid was
    # synced): deleting the extid profile alone leaves their data behind, so the delete
    # must not be reported done.
    fake.extid_lookup = True
    with destination_for(fake, tmp_path) as by_email:
        by_email.export_profile(ProfileChange("ann@example.com", new_properties={"a": 1}))
    with destination_for(
        fake, tmp_path, match_key="extid", delete_behavior="delete", delete_attempts=2
    ) as dest:
        dest.export_profile(ProfileChange("cust-1", new_properties={"b": 1}))
        result = dest.export_profile(
            ProfileChange(
                "cust-1", old_properties={"email": "ann@example.com"}, to_delete=True
            )
        )
    assert fake.find_user(extid="cust-1") is None
    assert fake.find_user(email="ann@example.com") is not None
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.retryable
    assert "NOT deleted" in result.error.reason


@pytest.mark.parametrize("match_key", ["extid", "sid"])
def test_a_delete_by_extid_or_sid_is_done_once_gone_by_email_too(
    fake: FakeSailthru, tmp_path: Path, match_key: str
) -> None:
    fake.extid_lookup = True
    with destination_for(fake, tmp_path, match_key="extid") as seed:
        seed.export_profile(ProfileChange("cust-1", new_properties={"email": "ann@example.com"}))
    user = fake.find_user(extid="cust-1")
    assert user is not None
    key = "cust-1" if match_key == "extid" else user["keys"]["sid"]
    with destination_for(fake, tmp_path, match_key=match_key, delete_behavior="delete") as dest:
        result = dest.export_profile(
            ProfileChange(key, old_properties={"email": "ann@example.com"}, to_delete=True)
        )
    assert result.status is Status.DELETED
    assert result.detail == "seen gone"
    assert fake.find_user(email="ann@example.com") is None


def test_matching_on_extid_sends_the_email_key_only_when_it_is_new_or_changed(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    fake.extid_lookup = True
    first = {"email": "ann@example.com", "a": 1}
    same = {"email": "ann@example.com", "a": 2}
    moved = {"email": "ann.b@example.com", "a": 2}
    with destination_for(fake, tmp_path, match_key="extid") as dest:
        dest.export_profile(ProfileChange("cust-1", new_properties=first))
        dest.export_profile(
            ProfileChange("cust-1", old_properties=first, new_properties=same)
        )
        dest.export_profile(ProfileChange("cust-1", old_properties=same, new_properties=moved))
        payloads = posted_payloads(dest)
    assert [p.get("keys") for p in payloads] == [
        {"email": "ann@example.com"},
        None,
        {"email": "ann.b@example.com"},
    ]
    user = fake.find_user(extid="cust-1")
    assert user is not None
    assert user["keys"]["email"] == "ann.b@example.com"
    assert user["vars"] == {"a": 2}


def test_clear_takes_the_user_out_of_the_default_list_too(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(
        fake, tmp_path, delete_behavior="clear", default_list="All Users"
    ) as dest:
        dest.export_profile(ProfileChange("a@example.com", new_properties={"x": 1}))
        assert set(fake.find_user(email="a@example.com")["lists"]) == {"All Users"}  # type: ignore[index]
        result = dest.export_profile(
            ProfileChange("a@example.com", old_properties={"x": 1}, to_delete=True)
        )
    assert result.status is Status.CLEARED
    user = fake.find_user(email="a@example.com")
    assert user is not None
    assert not user["lists"]
    assert user["vars"].get("x") in ("", None)


def test_a_deleted_result_says_how_many_attempts_the_delete_took(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    details: dict[int, set[str]] = {}
    with destination_for(fake, tmp_path, delete_behavior="delete", delete_attempts=8) as dest:
        dest.export_profiles(ProfileChange(f"u{i}@example.com", {"i": i}) for i in range(30))
        fake.faults = Faults(false_ok_delete_rate=0.5)
        for i in range(30):
            before = fake.calls[("DELETE", "user")]
            result = dest.export_profile(ProfileChange(f"u{i}@example.com", to_delete=True))
            assert result.status is Status.DELETED
            attempts = fake.calls[("DELETE", "user")] - before
            details.setdefault(attempts, set()).add(result.detail)
    assert details[1] == {"seen gone"}
    retried = {n: d for n, d in details.items() if n > 1}
    assert retried, "the seeded faults gave no retried delete"
    for n, seen in retried.items():
        assert seen == {f"seen gone after {n} attempts"}


@pytest.mark.parametrize(
    ("match_key", "ok", "too_long"),
    [
        # 254 characters is the longest address (RFC 5321 path limit); 255 is refused.
        ("email", "a" * 64 + "@" + "b" * 185 + ".com", "a" * 64 + "@" + "b" * 186 + ".com"),
        ("extid", "x" * 255, "x" * 256),
    ],
)
def test_the_key_length_limits_hold_exactly_at_the_boundary(
    fake: FakeSailthru, tmp_path: Path, match_key: str, ok: str, too_long: str
) -> None:
    fake.extid_lookup = True
    with destination_for(fake, tmp_path, match_key=match_key) as dest:
        accepted = dest.export_profile(ProfileChange(ok, new_properties={"a": 1}))
        refused = dest.export_profile(ProfileChange(too_long, new_properties={"a": 1}))
    assert accepted.status is Status.CREATED
    assert refused.status is Status.FAILED
    assert refused.error is not None
    assert refused.error.field == "key"
    if match_key == "extid":
        assert refused.error.reason == "an extid must be at most 255 printable characters"
    assert len(fake.users) == 1


def test_an_email_change_onto_a_taken_email_names_its_record(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(ProfileChange("taken@example.com", new_properties={"b": 1}))
        result = dest.export_profile(
            ProfileChange(
                "taken@example.com", old_key="old@example.com", new_properties={"a": 3},
                record_id="row-7",
            )
        )
    assert (result.status, result.record_id) == (Status.UPDATED, "row-7")
    assert result.detail == "email already in Sailthru: updated that user"


def test_a_skip_for_missing_consent_names_its_record(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path, required_consents={"sms"}) as dest:
        result = dest.export_profile(
            ProfileChange("a@example.com", new_properties={"a": 1}, record_id="row-3")
        )
    assert (result.status, result.record_id) == (Status.SKIPPED, "row-3")


def test_a_sailthru_refusal_fails_the_record_by_its_id(fake: FakeSailthru, tmp_path: Path) -> None:
    # The email key belongs to another profile: Sailthru refuses the update.
    fake.extid_lookup = True
    with destination_for(fake, tmp_path) as by_email:
        by_email.export_profile(ProfileChange("ann@example.com", new_properties={"a": 1}))
    with destination_for(fake, tmp_path, match_key="extid") as dest:
        result = dest.export_profile(
            ProfileChange("cust-2", new_properties={"email": "ann@example.com"}, record_id="r-9")
        )
    assert result.status is Status.FAILED
    assert result.error is not None
    assert (result.record_id, result.error.record_id) == ("r-9", "r-9")
    assert "Key conflict" in result.error.reason


def test_an_unchanged_profile_says_no_call_was_made(fake: FakeSailthru, tmp_path: Path) -> None:
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(ProfileChange("a@example.com", new_properties={"a": 1}))
        result = dest.export_profile(
            ProfileChange("a@example.com", old_properties={"a": 1}, new_properties={"a": 1})
        )
    assert (result.status, result.detail) == (Status.SKIPPED, "unchanged: no call made")


def test_a_renamed_var_is_the_whole_detail_of_a_created_result(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path, invalid_vars="drop") as dest:
        result = dest.export_profile(
            ProfileChange("a@example.com", new_properties={"a-b": 1, "c.d": 2})
        )
    assert result.status is Status.CREATED
    assert result.detail == "vars not sent as named: 'a-b' sent as 'a_b'; 'c.d' sent as 'c_d'"
    assert fake.find_user(email="a@example.com")["vars"] == {"a_b": 1, "c_d": 2}  # type: ignore[index]


def test_an_invalid_old_email_fails_the_record_naming_old_key(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path) as dest:
        result = dest.export_profile(
            ProfileChange("new@example.com", old_key="not an email", new_properties={"a": 1})
        )
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.field == "old_key"
    assert fake.users == {}


def test_a_list_lock_held_too_long_fails_the_record_on_lists_for_a_retry(
    fake: FakeSailthru, api: SailthruApi, tmp_path: Path
) -> None:
    holder = LocalLock(tmp_path, timeout=5)
    exporter = ProfileExporter(
        api, ListRegistry(api, LocalLock(tmp_path, timeout=0.05)),
        DestinationOptions(lock_dir=str(tmp_path)), app_for(fake),
    )
    with holder.hold("VIP"):
        result = exporter.export(
            ProfileChange("a@example.com", new_properties={"a": 1}, new_groups={"VIP"})
        )
    assert result.status is Status.FAILED
    assert result.error is not None
    assert (result.error.field, result.error.retryable) == ("lists", True)
    assert "VIP" in result.error.reason
    assert fake.users == {}


def test_in_update_mode_matching_on_extid_looks_the_user_up_by_extid(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # Update mode reads whether the user exists before writing: by the match key, not by
    # email (an extid is no email, and the person's email may be another profile's).
    fake.extid_lookup = True
    with destination_for(fake, tmp_path, match_key="extid") as seed:
        seed.export_profile(ProfileChange("cust-1", new_properties={"email": "ann@example.com"}))
    with destination_for(fake, tmp_path, match_key="extid", sync_mode="update") as dest:
        known = dest.export_profile(
            ProfileChange("cust-1", old_properties={"email": "ann@example.com"},
                          new_properties={"email": "ann@example.com", "a": 2})
        )
        unknown = dest.export_profile(ProfileChange("cust-2", new_properties={"a": 3}))
    assert known.status is Status.UPDATED
    assert fake.find_user(extid="cust-1")["vars"] == {"a": 2}  # type: ignore[index]
    assert (unknown.status, unknown.detail) == (
        Status.SKIPPED, "no such user in Sailthru (update mode)")
    assert fake.find_user(extid="cust-2") is None


def test_a_decision_made_after_a_read_keeps_the_accounts_time_zone(
    fake: FakeSailthru, api: SailthruApi, tmp_path: Path
) -> None:
    # Update mode reads whether the user exists, then decides again: a naive time is still
    # read in the account's zone (Paris: midnight is 23:00 UTC the day before), not in UTC.
    exporter = ProfileExporter(
        api, ListRegistry(api, LocalLock(tmp_path)),
        DestinationOptions(lock_dir=str(tmp_path), sync_mode="update"),
        app_for(fake, timezone="Europe/Paris"),
    )
    api.post("user", {"id": "a@example.com", "key": "email"})
    result = exporter.export(ProfileChange(
        "a@example.com", new_properties={"signup_time": datetime(2024, 1, 1)}))
    assert result.status is Status.UPDATED
    stored = fake.find_user(email="a@example.com")["vars"]  # type: ignore[index]
    assert stored == {"signup_time": 1704063600}  # 2023-12-31T23:00:00Z


def test_a_changed_extid_renames_the_persons_user(fake: FakeSailthru, tmp_path: Path) -> None:
    # Matching on extid, a row's extid changes and its email stays: the same Sailthru user
    # (same sid) gets the new extid; no second user, no key conflict on the email.
    fake.extid_lookup = True
    ann = {"email": "ann@example.com", "a": 1}
    with destination_for(fake, tmp_path, match_key="extid") as dest:
        dest.export_profile(ProfileChange("cust-1", new_properties=ann))
        sid = fake.find_user(extid="cust-1")["keys"]["sid"]  # type: ignore[index]
        moved = dest.export_profile(ProfileChange(
            "cust-2", old_key="cust-1", old_properties=ann, new_properties=ann))
    assert moved.status is Status.UPDATED
    assert fake.find_user(extid="cust-1") is None
    assert fake.find_user(extid="cust-2")["keys"]["sid"] == sid  # type: ignore[index]
    assert len(fake.users) == 1


def test_leaving_a_group_alone_is_sent(fake: FakeSailthru, tmp_path: Path) -> None:
    # The only change of the row is a group it left: the user leaves that list.
    with destination_for(fake, tmp_path) as dest:
        dest.export_profile(ProfileChange("a@example.com", new_properties={"a": 1},
                                          new_groups={"VIP", "News"}))
        left = dest.export_profile(ProfileChange(
            "a@example.com", old_properties={"a": 1}, new_properties={"a": 1},
            old_groups={"VIP", "News"}, new_groups={"News"}))
    assert left.status is Status.UPDATED
    assert set(fake.find_user(email="a@example.com")["lists"]) == {"News"}  # type: ignore[index]


def test_a_row_sent_whole_keeps_the_accounts_time_zone(
    fake: FakeSailthru, api: SailthruApi, tmp_path: Path
) -> None:
    # A resend (full resync, repair) sends every var: a naive time still in the account's zone.
    exporter = ProfileExporter(
        api, ListRegistry(api, LocalLock(tmp_path)), DestinationOptions(lock_dir=str(tmp_path)),
        app_for(fake, timezone="Europe/Paris"),
    )
    naive = {"signup_time": datetime(2024, 1, 1)}
    result = exporter.export(ProfileChange(
        "a@example.com", old_properties=naive, new_properties=naive, resend=True))
    assert result.status is Status.UPDATED
    stored = fake.find_user(email="a@example.com")["vars"]  # type: ignore[index]
    assert stored == {"signup_time": 1704063600}  # 2023-12-31T23:00:00Z


def test_a_sid_of_the_wrong_shape_fails_its_record_saying_why(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    with destination_for(fake, tmp_path, match_key="sid") as dest:
        result = dest.export_profile(ProfileChange("not-a-sid", new_properties={"a": 1}))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert (result.error.field, result.error.reason) == (
        "key", "a Sailthru ID is 24 lowercase hexadecimal characters")
    assert fake.users == {}
