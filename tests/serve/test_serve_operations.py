"""``serve`` run as a service: back-pressure with the real Segment client, ``/metrics``, JSON logs,
the graceful stop, and ``serve replay``."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import SECRET, app_for, make_fake
from prometheus_client.parser import text_string_to_metric_families
from segment.analytics.client import Client
from serving import WRITE_KEY, Serve, encoded

from sailthru_destination.cli import main
from sailthru_destination.destination import SailthruDestination
from sailthru_destination.options import DestinationOptions
from sailthru_destination.serve import MessageQueue, Worker
from sailthru_destination.serve.worker import OnceAdapter
from sailthru_destination.sync.memory.state import SyncState
from sailthru_destination.sync.reporting.report import RunReport
from sailthru_destination.testing import FakeSailthru, Faults
from sailthru_destination.transport.api import SailthruApi


@pytest.fixture
def fake() -> Iterator[FakeSailthru]:
    with make_fake(seed=24, rate_limits={"default": 100_000, "user": 100_000}) as server:
        yield server


def scrape(serve: Serve) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, parsed by prometheus_client's own parser."""
    text = requests.get(f"{serve.url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_full_queue_makes_the_real_client_back_off_and_deliver_everything_once(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    fake.latency = 0.02  # the drain is slower than the sender
    serve = Serve(fake, tmp_path, "--max-queue-messages", "20", "--retry-after", "1")
    serve.start()
    try:
        analytics = Client(WRITE_KEY, host=serve.url, gzip=True, upload_size=20, sync_mode=False)
        total = 80
        for n in range(total):
            analytics.track(f"u-{n % 5}", "Step", {"n": n})
        analytics.flush()  # returns when every batch got its 200, after the 429s
        analytics.shutdown()
        serve.drained()
        metrics = scrape(serve)
    finally:
        serve.stop()
    numbers = Counter(event["vars"]["n"] for event in fake.events)
    assert set(numbers) == set(range(total))
    assert max(numbers.values()) == 1
    assert serve.errors() == []
    assert metrics[("sailthru_serve_messages_refused_total", (("reason", "queue_full"),))] >= 1
    assert metrics[("sailthru_serve_messages_accepted_total", ())] == total
    sent = (("kind", "track"), ("outcome", "sent"))
    assert metrics[("sailthru_serve_sends_total", sent)] == total
    assert metrics[("sailthru_serve_queue_depth", ())] == 0
    assert metrics[("sailthru_serve_queue_oldest_age_seconds", ())] == 0
    calls = metrics[("sailthru_serve_sailthru_call_seconds_count", (("endpoint", "event"),))]
    assert calls >= total
    pace = ("sailthru_serve_sailthru_pace", (("endpoint", "event"), ("method", "POST")))
    assert metrics[pace] > 0


def test_sigterm_closes_intake_finishes_in_flight_sends_and_exits_0(
    fake: FakeSailthru, tmp_path: Path
) -> None:
    serve = Serve(fake, tmp_path, "--concurrency", "2", "--log-format", "json")
    serve.start()
    fake.latency = 0.5  # each send is in flight long enough for the stop to land on it
    batch = [{"type": "track", "userId": f"u-{n % 3}", "event": "Step", "properties": {"n": n},
              "messageId": f"step-{n}"} for n in range(12)]  # fmt: skip
    auth = (WRITE_KEY, "")
    assert requests.post(f"{serve.url}/v1/batch", json={"batch": batch}, auth=auth, timeout=5).ok
    deadline = time.monotonic() + 10
    while not fake.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert serve.proc is not None
    serve.proc.send_signal(signal.SIGTERM)
    # The intake closes first (health says so), while the sends in flight finish.
    while requests.get(f"{serve.url}/health", timeout=5).status_code == 200:
        time.sleep(0.005)
    late = requests.post(f"{serve.url}/v1/track", auth=auth, timeout=5,
                         json={"userId": "x", "event": "Late"})  # fmt: skip
    assert late.status_code == 503
    assert int(late.headers["Retry-After"]) > 0
    assert serve.proc.wait(15) == 0
    sent_at_stop = len(fake.events)
    assert 0 < sent_at_stop < len(batch), "the stop must land in the middle"
    fake.latency = 0.0
    serve.start()
    serve.drained()
    serve.stop()
    numbers = Counter(event["vars"]["n"] for event in fake.events)
    assert numbers == Counter(range(len(batch)))  # every one, once: none cut in flight
    assert serve.errors() == []
    # --log-format json: every log line is one JSON object, with the message id and outcome.
    lines = [line for line in serve.log().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    outcomes = {r["message_id"]: r["outcome"] for r in records if "message_id" in r}
    assert all(outcomes[f"step-{n}"] == "sent" for n in range(len(batch)))
    others = [line for line in serve.log().splitlines() if not line.startswith("{")]
    assert all(line.startswith(("serving", "stopped")) for line in others), others
    assert WRITE_KEY not in serve.log()
    assert SECRET not in serve.log()


def _drain(fake: FakeSailthru, folder: Path, queue: MessageQueue) -> Worker:
    app = app_for(fake)
    with SyncState(folder / "sent.sqlite") as sent:
        api = SailthruApi(app, sleep=lambda _: None)
        with SailthruDestination(
            app, DestinationOptions(lock_dir=str(folder)), api=api, sent_keys=sent
        ) as dest:
            worker = Worker(queue, OnceAdapter(dest, {}, sent_keys=sent), RunReport(folder / "r"))
            while worker.drain_once():
                pass
    return worker


def test_serve_replay_queues_each_retryable_failure_once(
    fake: FakeSailthru, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    queue = MessageQueue(data / "queue.sqlite")
    queue.append(encoded({"type": "identify", "messageId": f"r{n}", "userId": f"u{n}",
                          "traits": {"email": f"u{n}@example.com"}} for n in range(3)))  # fmt: skip
    # Sailthru is down: every profile update fails retryably (POST /user is idempotent).
    fake.faults = Faults(server_error_rate=1.0)
    assert _drain(fake, tmp_path, queue).counts == {"failed": 3}
    queue.close()
    fake.faults = Faults()
    argv = ["serve", "replay", "--data-dir", str(data)]
    assert main([*argv, "--reason", "no such reason"]) == 0
    assert "queued again 0 message(s)" in capsys.readouterr().out
    assert main(argv) == 0
    assert "queued again 3 message(s)" in capsys.readouterr().out
    assert main(argv) == 0  # a second replay finds nothing left to queue
    assert "queued again 0 message(s)" in capsys.readouterr().out
    queue = MessageQueue(data / "queue.sqlite")
    assert queue.depth() == 3
    before = fake.calls[("POST", "user")]
    assert _drain(fake, tmp_path, queue).counts == {"sent": 3}
    assert sorted(u["keys"]["extid"] for u in fake.users.values()) == ["u0", "u1", "u2"]
    assert fake.calls[("POST", "user")] - before == 3  # each sent once
    assert main(argv) == 0
    assert "queued again 0 message(s)" in capsys.readouterr().out


def test_serve_replay_refuses_while_serve_runs_and_without_a_queue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from filelock import FileLock

    assert main(["serve", "replay", "--data-dir", str(tmp_path)]) == 2
    assert "no queue" in capsys.readouterr().err
    MessageQueue(tmp_path / "queue.sqlite").close()
    with FileLock(str(tmp_path / "serve.lock")):
        assert main(["serve", "replay", "--data-dir", str(tmp_path)]) == 2
    assert "stop it first" in capsys.readouterr().err
