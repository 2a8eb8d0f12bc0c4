"""``serve`` shows what it skipped (issue 23): a message left alone on purpose lands in
``skipped.jsonl`` with its reason and is logged at ``-v``; serve's report page counts the
messages handled as rows read and the calls it logged."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from helpers import app_for
from serving import encoded

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import DestinationOptions
from sailthru_destination.serve import MessageQueue, Worker
from sailthru_destination.serve.worker import OnceAdapter
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.reporting.report import RunReport
from sailthru_destination.sync.reporting.report_html import build_report_html
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi
from sailthru_destination.transport.calllog import CallLog


def _drain(fake: FakeSailthru, folder: Path, queue: MessageQueue) -> Worker:
    """Drain ``queue`` as ``serve`` does: its calls logged to the report's calls.jsonl."""
    app = app_for(fake)
    report = RunReport(folder / "report")
    with SyncState(folder / "sent.sqlite") as sent:
        api = SailthruApi(app, call_log=CallLog(max_records=100, sink=report.calls))
        options = DestinationOptions(lock_dir=str(folder))
        with SailthruDestination(app, options, api=api, sent_keys=sent) as dest:
            adapter = OnceAdapter(dest, {}, sent_keys=sent)
            worker = Worker(queue, adapter, report, chunk=3)
            while worker.drain_once():
                pass
    report.close()
    return worker


def test_skipped_messages_are_reported_logged_and_counted_on_the_page(
    fake: FakeSailthru, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = MessageQueue(tmp_path / "queue.sqlite")
    queue.append(encoded([
        {"type": "identify", "messageId": "i1", "userId": "u1",
         "traits": {"email": "u1@example.com"}},
        {"type": "screen", "messageId": "s1", "userId": "u1", "name": "Home"},
        {"type": "track", "messageId": "t1", "userId": "u1", "event": "Played"},
    ]))
    with caplog.at_level(logging.INFO, logger="sailthru_destination.serve"):
        worker = _drain(fake, tmp_path, queue)
    assert worker.counts == {"sent": 2, "skipped": 1}
    skipped = [json.loads(line) for line in
               (tmp_path / "report" / "skipped.jsonl").read_text().splitlines()]
    assert len(skipped) == 1
    assert skipped[0]["where"] == "queue #2"
    assert skipped[0]["reason"]
    assert any("skipped" in r.getMessage() and skipped[0]["reason"] in r.getMessage()
               for r in caplog.records), caplog.text

    folder = tmp_path / "report"
    # What serve writes when it stops (and `report <folder>` then draws).
    (folder / "summary.json").write_text(json.dumps({"results": worker.counts,
                                                     "api_key": "****"}))
    calls = (folder / "calls.jsonl").read_text().count("\n")
    assert calls > 0
    page = build_report_html(folder)
    rows = re.search(r"data-count='rows'><div class='n'>([^<]*)<", page)
    api_calls = re.search(r"data-count='api_calls'><div class='n'>([^<]*)<", page)
    assert rows
    assert api_calls
    assert rows.group(1) == "3"
    assert api_calls.group(1) == f"{calls:,}"
