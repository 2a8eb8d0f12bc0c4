"""The bulk path builds the same payloads as the per-user path, and no-change re-runs stay cheap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import destination_for, make_fake, posted_payloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.options import AppOptions
from sailthru_destination.sync.bulkload.bulk import BulkExporter
from sailthru_destination.sync.bulkload.bulk_choice import bulk_is_faster, bulk_seconds
from sailthru_destination.sync.config import SyncConfig
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.runner import RunSummary, SyncRunner
from sailthru_destination.sync.warehouse.sources import Row
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi

FAST = {"default": 10000.0}

_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12), st.dictionaries(st.sampled_from(["a", "b"]), st.text(max_size=5),
                                          max_size=2),
)
_PROPS = st.dictionaries(st.sampled_from(["plan", "city", "ltv", "First Name", "bad-var!"]),
                         _VALUES, max_size=4)
_GROUPS = st.frozensets(st.sampled_from(["VIP", "News", "Beta"]))


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with make_fake(rate_limits=FAST) as running:
        yield running


@pytest.mark.parametrize("invalid_vars", ["fail", "drop"])
def test_a_bulk_line_is_the_payload_the_per_user_path_posts(
    fake: FakeSailthru, tmp_path: Path, invalid_vars: str
) -> None:
    dest = destination_for(fake, tmp_path, invalid_vars=invalid_vars, default_list="All",
                           list_prefix="dw ")
    bulk = BulkExporter(dest, SyncConfig(name="t"))
    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(old=_PROPS, new=_PROPS, old_groups=_GROUPS, new_groups=_GROUPS,
           optout=st.sampled_from([None, "none", "basic", "nonsense"]))
    def check(old: dict[str, Any], new: dict[str, Any], old_groups: frozenset[str],
              new_groups: frozenset[str], optout: str | None) -> None:
        change = ProfileChange(key=f"u{next(counter)}@example.com", old_properties=old,
                               new_properties=new, old_groups=old_groups,
                               new_groups=new_groups, optout=optout)
        line = bulk.line(change)
        before = len(posted_payloads(dest))
        [result] = dest.export_profiles([change]).results
        posted = posted_payloads(dest)[before:]
        if isinstance(line, tuple):
            payload, expected = line
            assert posted == [json.loads(json.dumps(payload))]
            assert (expected.status, expected.record_id) == (result.status, result.record_id)
            assert expected.detail.endswith(result.detail)
        else:
            assert line is not None
            assert posted == []
            assert line == result

    with dest:
        check()


def _runner_sync(fake: FakeSailthru, tmp_path: Path, rows: list[dict[str, Any]],
                 rate: float = 10000.0, **settings: Any) -> RunSummary:
    limits = {**FAST, "user": rate}
    config = SyncConfig(name="t", rate_limits=limits, **settings)
    app = AppOptions("test-key", "test-secret", fake.url)
    api = SailthruApi(app, rate_limits=limits, sleep=lambda _s: None)
    options = config.destination_options(lock_dir=str(tmp_path / "locks"))
    with SailthruDestination(app, options, api=api) as dest, SyncState(tmp_path / "s.db") as st_:
        source = [Row(f"line {n}", dict(r)) for n, r in enumerate(rows, start=1)]
        return SyncRunner(dest, config, st_).run(source)


def _people(n: int, plan: str = "gold") -> list[dict[str, Any]]:
    return [{"id": i, "email": f"p{i}@example.com", "plan": plan, "groups": ["News"]}
            for i in range(n)]


def test_a_no_change_rerun_reads_no_user_and_makes_no_call(
    fake: FakeSailthru, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runner_sync(fake, tmp_path, _people(1200))
    from sailthru_destination.sync import _diff as runner  # pass 1 maps the rows

    mapped: list[str] = []
    real = runner.read_user_row
    monkeypatch.setattr(runner, "read_user_row",
                        lambda row, config, pk, **kw:
                            mapped.append(pk) or real(row, config, pk, **kw))
    again = _runner_sync(fake, tmp_path, _people(1200))
    assert (again.counts["unchanged"], again.total_calls, mapped) == (1200, 0, [])


def test_the_same_row_written_differently_is_still_unchanged(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _runner_sync(fake, tmp_path, _people(3))
    reordered = [dict(reversed(list(row.items()))) for row in _people(3)]
    again = _runner_sync(fake, tmp_path, reordered)
    assert (again.counts["unchanged"], again.total_calls) == (3, 0)
    changed = _runner_sync(fake, tmp_path, _people(3, plan="free"))
    assert changed.counts["updated"] == 3
    assert fake.find_user(email="p2@example.com")["vars"]["plan"] == "free"  # type: ignore[index]


def test_a_state_file_from_before_the_row_digest_is_honoured(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _runner_sync(fake, tmp_path, _people(4))
    with SyncState(tmp_path / "s.db") as state:  # as an older version stored it
        for record in [state.get(str(i)) for i in range(4)]:
            assert record is not None
            state.put(record.__class__(record.pk, record.hash.partition(":")[0], record.match,
                                       record.properties, record.groups, record.optout))
    again = _runner_sync(fake, tmp_path, _people(4))
    assert (again.counts["unchanged"], again.total_calls) == (4, 0)
    with SyncState(tmp_path / "s.db") as state:  # the digest is remembered from now on
        assert all(":" in (state.get_hash(str(i)) or "") for i in range(4))


def test_a_mapping_change_still_exports_every_row_again(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    _runner_sync(fake, tmp_path, _people(3))
    again = _runner_sync(fake, tmp_path, _people(3), list_prefix="dw ")
    assert again.counts["updated"] == 3


def test_a_duplicate_key_in_one_block_fails_and_the_first_row_wins(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    rows = [*_people(2), {"id": 0, "email": "other@example.com", "plan": "x"}]
    summary = _runner_sync(fake, tmp_path, rows)
    assert (summary.counts["created"], summary.failed) == (2, 1)
    assert fake.find_user(email="other@example.com") is None


def test_auto_takes_the_job_path_for_an_incremental_run_when_the_model_says_it_is_faster(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    # At 1 user/s a job's ~70 s of overhead is cheaper than 100 calls; at 10,000/s it is not.
    first = _runner_sync(fake, tmp_path, _people(100), rate=10000.0, bulk="auto")
    assert first.path == "per-user"
    changed = _runner_sync(fake, tmp_path, _people(100, plan="free"), rate=1.0, bulk="auto")
    assert (changed.path, changed.jobs, changed.counts["updated"]) == ("bulk", 1, 100)
    explicit = _runner_sync(fake, tmp_path, _people(100, plan="x"), rate=1.0, bulk="auto",
                            bulk_threshold=1000)
    assert explicit.path == "per-user"


def test_the_cost_model() -> None:
    assert not bulk_is_faster(0, 300)
    assert not bulk_is_faster(20_000, 300)
    assert bulk_is_faster(30_000, 300)
    assert bulk_is_faster(3_000, 40)
    assert bulk_seconds(1000) > bulk_seconds(10)
    assert bulk_is_faster(1, 0)


def test_a_failed_line_does_not_sink_the_bulk_file(fake: FakeSailthru, tmp_path: Path) -> None:
    rows = [*_people(3), {"id": 9, "email": "not an email", "plan": "x"}]
    summary = _runner_sync(fake, tmp_path, rows, bulk="always")
    assert (summary.path, summary.counts["created"], summary.failed) == ("bulk", 3, 1)


def test_a_jsonl_model_rerun_hashes_each_line_and_maps_only_what_changed(
    fake: FakeSailthru, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sailthru_destination.sync import _diff as runner  # pass 1 maps the rows
    from sailthru_destination.sync.warehouse.sources import open_source

    model = tmp_path / "people.jsonl"

    def write(people: list[dict[str, Any]]) -> None:
        model.write_text("".join(json.dumps(p) + "\n" for p in people), encoding="utf-8")

    def sync() -> RunSummary:
        config = SyncConfig(name="t", rate_limits=FAST)
        app = AppOptions("test-key", "test-secret", fake.url)
        api = SailthruApi(app, rate_limits=FAST, sleep=lambda _s: None)
        options = config.destination_options(lock_dir=str(tmp_path / "locks"))
        with SailthruDestination(app, options, api=api) as dest, \
                SyncState(tmp_path / "s.db") as state:
            return SyncRunner(dest, config, state).run(open_source(str(model)))

    people = _people(5)
    write(people)
    sync()
    mapped: list[str] = []
    real = runner.read_user_row
    monkeypatch.setattr(runner, "read_user_row",
                        lambda row, config, pk, **kw:
                            mapped.append(pk) or real(row, config, pk, **kw))
    people[1] = dict(reversed(list(people[1].items())))  # same user, written differently
    people[3] = {**people[3], "plan": "platinum"}
    write(people)
    again = sync()
    assert (again.counts["unchanged"], again.counts["updated"], sorted(mapped)) == (
        4, 1, ["1", "3"])
    mapped.clear()
    third = sync()
    assert (third.counts["unchanged"], mapped) == (5, [])


_ROW_VALUES = st.one_of(st.none(), st.just(""), st.integers(-1000, 1000), st.text(max_size=8),
                        st.booleans(), st.lists(st.integers(0, 9), max_size=3))
_ROW = st.fixed_dictionaries(
    {"plan": _ROW_VALUES, "city": _ROW_VALUES},
    optional={"groups": st.lists(st.sampled_from(["VIP", "News", "Beta"]), max_size=3),
              "bad var!": _ROW_VALUES},
)


def test_a_model_synced_through_jobs_ends_as_synced_user_by_user(tmp_path: Path) -> None:
    counter = iter(range(10**6))

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(first=st.lists(_ROW, min_size=1, max_size=6),
           second=st.lists(_ROW, min_size=1, max_size=6))
    def check(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> None:
        n = next(counter)

        def rows(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{"id": i, "email": f"e{n}-{i}@example.com", **v} for i, v in enumerate(values)]

        outcomes = []
        for path, fake in (("never", per_user), ("always", bulk)):
            home = tmp_path / f"{n}-{path}"
            counts = [dict(_runner_sync(fake, home, rows(history), bulk=path).counts)
                      for history in (first, second)]
            users = {k: v for k, v in _snapshot(fake).items() if k.startswith(f"e{n}-")}
            outcomes.append((counts, users))
        assert outcomes[0] == outcomes[1]

    with make_fake(rate_limits=FAST) as per_user, make_fake(rate_limits=FAST) as bulk:
        check()


def _snapshot(fake: FakeSailthru) -> dict[str, Any]:
    return {u["keys"]["email"]: (u["vars"], sorted(u["lists"])) for u in fake.users.values()}
