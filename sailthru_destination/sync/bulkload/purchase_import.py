"""Historical purchases in bulk: ``purchase_import`` jobs instead of one POST /purchase each.

At 40 calls/s, 100,000 orders take 42 minutes one by one; a job takes them in one upload.
Imported purchases update the buyers' profiles but do not trigger flows (what a backfill
wants). Each line is the order's POST /purchase payload, built by the per-purchase code
(:meth:`~sailthru_destination.features.purchases.PurchaseSender.import_payload`) and written in the
job-file format of :mod:`.jobfile`.

Exactly once, with the same sent-keys store as the per-purchase path (and its doubt rule,
:mod:`~sailthru_destination.once.doubt`):

- an order the store already knows (sent, pending, unknown) never goes in a file (its claim
  fails): the per-purchase path decides it (skipped when sent, read back when in doubt);
- the orders of a file are claimed (committed) just before the file is posted;
- a job that completes with no error settles every order ``sent``; one that names the
  lines it refused settles the others ``sent`` and sends the refused ones one by one (a
  refused line imported nothing);
- a job refused outright (no job started) imported nothing: its claims are released and its
  orders go per purchase;
- a job whose POST had no clear answer, that cannot be polled, is not done in time, ends in
  error or refuses lines without naming them may import (part of) its file, now or later
  (jobs run asynchronously, and a created job runs even when its POST's reply is lost):
  every order of it is ``unknown`` and **in doubt**, remembered with the job's id when one
  came back. No order of it is touched in this run; a later run looks the job up (GET /job)
  and reads an order back only once the job is over, and posts it again only when reads
  spread over the doubt age miss it. A job whose id never came back cannot be looked up
  (Sailthru documents no list of jobs), so its orders wait out the doubt age.

A run killed after claiming leaves the orders ``pending``: the next run reads them back
under the same rule.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...destination import SailthruDestination
from ...errors import OutcomeUnknown, RecordError, SailthruError
from ...features._commerce_records import Shop, guard, text
from ...features.commerce import Purchase
from ...features.purchases import PurchaseSender, doubt_log_of
from ...once.doubt import UNKNOWN_JOB, Doubt
from ...once.sentkeys import KeyState, SentKeys
from ...results import ExportResult, Status
from ...transport._concurrency import KeyedLocks
from ..config import SyncConfig
from .bulk_choice import use_bulk
from .jobfile import JobFile
from .jobs import JobFailed, JobRefused, JobRunner

__all__ = ["PurchaseImporter", "bulk_purchases"]

log = logging.getLogger(__name__)

_KIND = "purchase"
_CHUNK = 10_000

if TYPE_CHECKING:
    from ..activity import Sender
    from ..runner import RunSummary


def bulk_purchases(
    destination: SailthruDestination, config: SyncConfig, sent: SentKeys, summary: RunSummary
) -> tuple[Sender, int] | None:
    """For a purchases model with ``bulk`` not ``never``: a sender of chunks of orders that
    takes the job path for each chunk the cost model (or ``bulk_threshold``) says is faster
    at the account's POST /purchase rate, and the chunk size. None otherwise."""
    if config.object != "purchases" or config.bulk == "never":
        return None
    importer = PurchaseImporter(destination, sent, chunk=_CHUNK)

    def send(batch: list[Purchase], on_result: Callable[[Purchase, ExportResult], object]) -> None:
        if not use_bulk(config, len(batch), destination.api.limiter("POST", _KIND).rate):
            destination.send_purchases(batch, on_result=on_result)
            return
        try:
            for purchase, result in importer.send(batch, lambda purchase: purchase):
                on_result(purchase, result)
        finally:
            summary.path, summary.jobs = "bulk", importer.jobs

    return send, _CHUNK


@dataclass
class _Line:
    """One order of a file: the caller's item, its order id and payload."""

    item: Any
    order_id: str
    payload: dict[str, Any]


class PurchaseImporter:
    """Sends purchases through ``purchase_import`` jobs of at most ``chunk`` orders each.

    ``sent`` is the sent-keys store the per-purchase path uses (the sync state);
    ``per_purchase`` sends a list of purchases one by one and returns their results in order
    (the destination's own path, for the orders a job cannot settle). ``doubt_age`` and
    ``clock`` (the destination's by default) time the orders in doubt.
    """

    def __init__(
        self,
        destination: SailthruDestination,
        sent: SentKeys,
        *,
        chunk: int = 10_000,
        poll_interval: float = 0.2,
        max_poll: float = 10.0,
        timeout: float = 3600.0,
        doubt_age: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._dest = destination
        clock = clock or destination.clock
        if doubt_age is None:
            doubt_age = destination.options.purchase_doubt_age
        self._clock = clock
        self._doubts = doubt_log_of(sent)
        self._sent = sent
        self._chunk = chunk
        shop = Shop(api=destination.api, sent=sent, key_locks=KeyedLocks(),
                    user_locks=KeyedLocks(), timezone=destination.app.timezone)
        self._builder = PurchaseSender(shop, doubt_age=doubt_age, clock=clock)
        self._jobs = JobRunner(destination.api, poll_interval=poll_interval, max_poll=max_poll,
                               timeout=timeout)

    @property
    def jobs(self) -> int:
        """How many jobs were started."""
        return self._jobs.started

    def send(
        self, items: Iterable[Any], purchase_of: Callable[[Any], Purchase]
    ) -> Iterator[tuple[Any, ExportResult]]:
        """Yield ``(item, result)`` for every item, in chunks through the job API."""
        with tempfile.TemporaryDirectory(prefix="sailthru-purchases-") as folder:
            path = os.path.join(folder, "purchases.jsonl")
            lines: list[_Line] = []
            for item in items:
                outcome = self._line(item, purchase_of(item))
                if isinstance(outcome, ExportResult):
                    yield item, outcome
                    continue
                lines.append(outcome)
                if len(lines) >= self._chunk:
                    yield from self._import(path, lines, purchase_of)
                    lines = []
            if lines:
                yield from self._import(path, lines, purchase_of)

    def _line(self, item: Any, purchase: Purchase) -> _Line | ExportResult:
        """The order's line, or its failed result."""
        line: _Line | None = None

        def build() -> ExportResult:
            nonlocal line
            order_id, payload = self._builder.import_payload(purchase)
            line = _Line(item, order_id, payload)
            return ExportResult(Status.SKIPPED, order_id)

        result = guard(text(purchase.order_id), build)
        if line is None:
            return result
        return line

    def _import(
        self, path: str, lines: list[_Line], purchase_of: Callable[[Any], Purchase]
    ) -> Iterator[tuple[Any, ExportResult]]:
        # Claimed just before the post, so a run killed while building leaves nothing claimed.
        claimed: list[_Line] = []
        again: list[Any] = []
        file = JobFile(path)
        try:
            for line in lines:
                if self._sent.claim(_KIND, line.order_id):
                    file.add(line.payload)
                    claimed.append(line)
                else:  # known to the store (sent, or in doubt), or a repeat in this file
                    again.append(line.item)
        finally:
            file.close()
        if claimed:
            outcome = self._run(file, claimed)
            for line in claimed:
                result = outcome.get(line.order_id)
                if result is None:
                    again.append(line.item)
                else:
                    yield line.item, result
        if again:
            yield from self._per_purchase(again, purchase_of)

    def _run(self, file: JobFile, claimed: list[_Line]) -> dict[str, ExportResult]:
        """Run the job; the result of each order it settled (the others go one by one)."""
        try:
            status = self._jobs.run(
                {"job": "purchase_import"}, file.path, file.lines, repeat=False
            )
        except JobRefused as exc:
            log.warning("%s: sending its %d orders one by one", exc, len(claimed))
            for line in claimed:  # nothing of it ran
                self._sent.release(_KIND, line.order_id)
            return {}
        except OutcomeUnknown as exc:
            return self._in_doubt(claimed, UNKNOWN_JOB, f"the job's POST had no clear answer "
                                  f"({exc}): it may run under an id that never came back")
        except (JobFailed, SailthruError) as exc:
            job = getattr(exc, "job_id", None) or UNKNOWN_JOB
            return self._in_doubt(claimed, job, f"the job failed or is not over ({exc})")
        errors = status.get("errors")
        if not errors:
            self._mark(claimed, KeyState.SENT)
            return {line.order_id: _imported(line) for line in claimed}
        refused = _refused_lines(status, len(claimed))
        if refused is None:
            return self._in_doubt(claimed, None, f"job {status.get('job_id')} refused "
                                  f"{errors} line(s) without saying which")
        log.warning("purchase_import job %s refused line(s) %s: sending those orders one by "
                    "one", status.get("job_id"), sorted(refused))
        results: dict[str, ExportResult] = {}
        for number, line in enumerate(claimed, start=1):
            if number in refused:  # refused, so not imported: sent one by one
                self._sent.release(_KIND, line.order_id)
            else:
                self._sent.settle(_KIND, line.order_id, KeyState.SENT)
                results[line.order_id] = _imported(line)
        return results

    def _in_doubt(self, claimed: list[_Line], job: str | None,
                  why: str) -> dict[str, ExportResult]:
        """Every order of an unclear job: unknown, in doubt with its job, untouched now."""
        log.warning("purchase_import of %d orders: %s; they are in doubt", len(claimed), why)
        now = self._clock()
        results: dict[str, ExportResult] = {}
        for line in claimed:
            self._sent.settle(_KIND, line.order_id, KeyState.UNKNOWN)
            self._doubts.note_doubt(_KIND, line.order_id,
                                    Doubt(now, owner=self._builder.session, job=job))
            results[line.order_id] = ExportResult.failed(RecordError(
                str(line.order_id),
                f"in doubt: order {line.order_id!r} was in a purchase_import job whose "
                f"outcome is unclear: {why}. It is not sent again in this run; a later run "
                "looks the job up and reads the order back", retryable=True))
        return results

    def _mark(self, lines: list[_Line], state: KeyState) -> None:
        for line in lines:
            self._sent.settle(_KIND, line.order_id, state)

    def _per_purchase(
        self, items: list[Any], purchase_of: Callable[[Any], Purchase]
    ) -> Iterator[tuple[Any, ExportResult]]:
        results = self._dest.send_purchases(purchase_of(item) for item in items).results
        for index, item in enumerate(items):
            yield item, results[index]


def _imported(line: _Line) -> ExportResult:
    items = len(line.payload["items"])
    return ExportResult(Status.SENT, str(line.order_id),
                        f"order {line.order_id!r}: {items} item(s) (imported by a job)")


def _refused_lines(status: dict[str, Any], size: int) -> set[int] | None:
    """The numbers of the lines a job says it refused, or None when it does not say which
    (or says something that does not add up: then nothing is taken as refused)."""
    named = status.get("error_lines")
    if not isinstance(named, list):
        return None
    numbers: set[int] = set()
    for entry in named:
        number = entry.get("line") if isinstance(entry, dict) else None
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= size:
            return None
        numbers.add(number)
    if len(numbers) != status.get("errors"):
        return None
    return numbers
