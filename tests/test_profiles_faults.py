"""Profile export under Sailthru's faults: every record ends applied or reported, never lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers import app_for, make_fake

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.features.profiles import ProfileChange
from sailthru_destination.options import DestinationOptions
from sailthru_destination.results import ExportResult, Status
from sailthru_destination.testing import Faults
from sailthru_destination.transport.api import RetryPolicy, SailthruApi


def _destination(fake: object, lock_dir: Path, **options: object) -> SailthruDestination:
    app = app_for(fake)  # type: ignore[arg-type]
    opts = DestinationOptions(lock_dir=str(lock_dir), concurrency=64, **options)  # type: ignore[arg-type]
    retry = RetryPolicy(max_attempts=8, initial_backoff=0.001, max_backoff=0.01)
    return SailthruDestination(app, opts, api=SailthruApi(app, concurrency=64, retry=retry))


def _create_then_delete(dest: SailthruDestination, count: int) -> list[ExportResult]:
    """Each user is deleted moments after it is written: inside the stale-read window."""

    def one(i: int) -> ExportResult:
        email = f"d{i}@example.com"
        assert dest.export_profile(ProfileChange(email, new_properties={"i": i})).ok
        return dest.export_profile(ProfileChange(email, to_delete=True))

    with ThreadPoolExecutor(max_workers=64) as pool:
        return list(pool.map(one, range(count)))


FAULTS = Faults(false_ok_delete_rate=0.3, stale_read_window=0.3)


def test_deletes_under_false_oks_and_stale_reads_are_only_reported_when_seen_gone(
    tmp_path: Path,
) -> None:
    with make_fake(seed=5, faults=FAULTS, rate_limits={"default": 100_000}) as fake:
        with _destination(
            fake, tmp_path, delete_behavior="delete", delete_confirm_after=0.4
        ) as dest:
            results = _create_then_delete(dest, 500)
        assert len(results) == 500
        for result in results:
            present = fake.find_user(email=result.record_id) is not None
            if result.status is Status.DELETED:
                assert not present, f"{result.record_id} reported deleted but still present"
            else:
                assert result.status is Status.FAILED
                assert result.error is not None
                assert result.error.retryable
        assert sum(r.status is Status.DELETED for r in results) >= 490
        assert fake.calls[("DELETE", "user")] > 500  # false 200s were seen and retried


def test_without_the_confirming_read_stale_reads_would_report_undone_deletes(
    tmp_path: Path,
) -> None:
    # The counterpart that shows the test above can fail: one read is fooled.
    with make_fake(seed=5, faults=FAULTS, rate_limits={"default": 100_000}) as fake:
        with _destination(fake, tmp_path, delete_behavior="delete", delete_confirm_after=0) as dest:
            results = _create_then_delete(dest, 100)
        fooled = [
            r
            for r in results
            if r.status is Status.DELETED and fake.find_user(email=r.record_id) is not None
        ]
        assert fooled


def test_transient_faults_end_with_every_profile_applied_or_reported(tmp_path: Path) -> None:
    faults = Faults(connection_error_rate=0.03, server_error_rate=0.02)
    with make_fake(seed=9, faults=faults, rate_limits={"default": 100_000}) as fake:
        with _destination(fake, tmp_path) as dest:
            batch = dest.export_profiles(
                ProfileChange(f"t{i}@example.com", new_properties={"i": i}, new_groups={"T"})
                for i in range(400)
            )
        assert len(batch) == 400
        for i, result in enumerate(batch.results):
            user = fake.find_user(email=f"t{i}@example.com")
            if result.status is Status.CREATED:
                assert user is not None
                assert user["vars"]["i"] == i
                assert "T" in user["lists"]
            else:
                assert result.status is Status.FAILED
                assert result.error is not None
                assert result.error.reason
        assert batch.counts["created"] >= 396
        assert [r["name"] for r in fake.lists].count("T") == 1
