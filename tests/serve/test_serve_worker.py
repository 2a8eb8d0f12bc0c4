"""The queue and worker in process: a sender's retry after a lost 200 sends nothing twice."""

from __future__ import annotations

from pathlib import Path

from helpers import app_for
from serving import encoded

from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import DestinationOptions
from sailthru_destination.serve import MessageQueue, Worker
from sailthru_destination.serve.worker import OnceAdapter
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.reporting.report import RunReport
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import SailthruApi


def _drain(fake: FakeSailthru, folder: Path, queue: MessageQueue) -> Worker:
    app = app_for(fake, tracking_url=fake.url)
    with SyncState(folder / "sent.sqlite") as sent:
        api = SailthruApi(app, sleep=lambda _: None)
        options = DestinationOptions(lock_dir=str(folder))
        with SailthruDestination(app, options, api=api, sent_keys=sent) as dest:
            adapter = OnceAdapter(dest, {"customer_id": "c-1"}, sent_keys=sent)
            worker = Worker(queue, adapter, RunReport(folder / "report"), chunk=3)
            while worker.drain_once():
                pass
    return worker


def test_a_message_queued_twice_is_sent_once_whatever_its_kind(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    queue = MessageQueue(tmp_path / "queue.sqlite")
    context = {"page": {"url": "https://shop.example/"}}
    messages = [
        {"type": "identify", "messageId": "i1", "userId": "u1",
         "traits": {"email": "u1@example.com"}},
        {"type": "track", "messageId": "t1", "userId": "u1", "event": "Played"},
        {"type": "page", "messageId": "p1", "userId": "u1", "context": context},
        {"type": "track", "messageId": "o1", "userId": "u1", "event": "Order Completed",
         "context": context, "properties": {"order_id": "o-1", "products": [
             {"product_id": "s1", "name": "S", "price": 2}]}},
        {"type": "track", "messageId": "c1", "userId": "u1", "event": "Product Added",
         "context": context, "properties": {"product_id": "s2", "name": "T", "price": 3}},
    ]  # fmt: skip
    assert queue.append(encoded(messages)) == 5
    # The sender never saw the 200 and sent the request again: the copies are not queued.
    again = [*messages, {"type": "track", "messageId": "t2", "userId": "u1", "event": "Played"}]
    assert queue.append(encoded(again)) == 1
    worker = _drain(fake, tmp_path, queue)
    assert worker.counts == {"sent": 6}
    assert len(fake.events) == 2
    assert len(fake.pageviews) == len(fake.purchases) == 1
    user = fake.find_user(extid="u1")
    assert user is not None
    assert [(i["id"], i["qty"]) for i in user["purchase_incomplete"]["items"]] == [("s2", 1)]
    assert queue.depth() == 0
    assert [status for _, status, _ in queue.results()] == ["sent"] * 6


def test_a_replay_after_a_crash_sends_nothing_twice(fake: FakeSailthru, tmp_path: Path) -> None:
    queue = MessageQueue(tmp_path / "queue.sqlite")
    queue.append(encoded({"type": "track", "messageId": f"e{n}", "userId": "u", "event": "E",
                          "properties": {"n": n}} for n in range(4)))  # fmt: skip
    _drain(fake, tmp_path, queue)
    # As if the process died after sending but before recording the results.
    with queue._arrived:
        queue._db.execute("UPDATE messages SET status = NULL, detail = NULL")
    queue.close()
    queue = MessageQueue(tmp_path / "queue.sqlite")  # the next start
    worker = _drain(fake, tmp_path, queue)
    assert worker.counts == {"skipped": 4}
    assert [e["vars"]["n"] for e in fake.events] == [0, 1, 2, 3]
