"""The library against either answer where the fake guesses Sailthru's (``Inferred``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import KEY, SECRET, make_fake
from sailthru import SailthruClient
from test_segment import build, identify, product, sent, track

from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.results import Status
from sailthru_destination.segment import SegmentAdapter
from sailthru_destination.testing import FakeSailthru, Inferred


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with make_fake(rate_limits={"default": 100_000}) as server:
        yield server


@pytest.fixture
def adapter(fake: FakeSailthru, tmp_path: Path) -> Iterator[SegmentAdapter]:
    dest, segment = build(fake, tmp_path)
    with dest:
        yield segment


@pytest.mark.parametrize("answer", ["refuse", "merge"])
def test_identify_with_a_known_email_applies_whatever_the_conflict_rule(
    fake: FakeSailthru, adapter: SegmentAdapter, answer: str
) -> None:
    fake.inferred = Inferred(key_conflict=answer)  # type: ignore[arg-type]
    sent(adapter.process(track("Subscribed", {"list": "W", "email": "k@example.com"}, userId=None)))
    sent(adapter.process(identify("u-1", traits={"email": "k@example.com", "plan": "pro"})))
    user = fake.find_user(extid="u-1")
    assert user is not None
    assert (user["keys"]["email"], user["vars"], len(fake.users)) == (
        "k@example.com",
        {"plan": "pro"},
        1,
    )


@pytest.mark.parametrize("answer", ["refuse", "merge"])
def test_a_host_export_with_a_taken_email_is_applied_or_failed_with_the_reason(
    fake: FakeSailthru, tmp_path: Path, answer: str
) -> None:
    fake.inferred = Inferred(key_conflict=answer)  # type: ignore[arg-type]
    dest, _ = build(fake, tmp_path, match_key="extid")
    with dest:
        first = dest.export_profile(ProfileChange("x-1", new_properties={"email": "t@example.com"}))
        second = dest.export_profile(
            ProfileChange("x-2", new_properties={"email": "t@example.com"})
        )
    assert first.ok
    if answer == "merge":
        assert second.ok
        assert fake.find_user(extid="x-2") is not None
    else:
        assert second.status is Status.FAILED
        assert second.error is not None
        assert "t@example.com" in second.detail


@pytest.mark.parametrize("answer", ["create", "refuse"])
def test_an_event_before_identify_is_sent_or_failed_retryable_then_sent(
    fake: FakeSailthru, adapter: SegmentAdapter, answer: str
) -> None:
    fake.inferred = Inferred(unknown_user_event=answer)  # type: ignore[arg-type]
    early = track("Video Played", {"n": 1}, userId="u-9")
    result = adapter.process(early)
    if answer == "create":
        sent(result)
        return
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.retryable
    assert "once the user exists" in result.detail
    assert fake.events == []
    sent(adapter.process(identify("u-9", traits={"email": "n@example.com"})))
    sent(adapter.process(early))  # the retry
    assert [e["vars"] for e in fake.events] == [{"n": 1}]


@pytest.mark.parametrize("answer", ["empty", "null"])
def test_profiles_without_vars_read_as_empty_or_null_work_the_same(
    fake: FakeSailthru, adapter: SegmentAdapter, tmp_path: Path, answer: str
) -> None:
    fake.inferred = Inferred(empty_vars=answer)  # type: ignore[arg-type]
    sent(adapter.process(identify("u-3", traits={"email": "e@example.com"})))
    sent(adapter.process(identify("u-4", anonymousId="u-3", traits={})))  # reads u-3 back
    sent(adapter.process(track("Product Added", product("p1"), userId="u-4")))
    dest, _ = build(fake, tmp_path, sync_mode="update")
    with dest:
        assert dest.export_profile(ProfileChange("e@example.com", new_properties={"a": 1})).ok
    user = fake.find_user(email="e@example.com")
    assert user is not None
    assert user["vars"] == {"a": 1}
    assert [i["id"] for i in user["purchase_incomplete"]["items"]] == ["p1"]


def test_the_fake_answers_null_vars_when_asked(fake: FakeSailthru) -> None:
    client = SailthruClient(KEY, SECRET, api_url=fake.url)
    client.save_user("v@example.com")
    assert client.get_user("v@example.com").get_body()["vars"] == {}
    fake.inferred = Inferred(empty_vars="null")
    assert client.get_user("v@example.com").get_body()["vars"] is None
    with pytest.raises(ValueError, match="empty_vars"):
        Inferred(empty_vars="none")  # type: ignore[arg-type]
