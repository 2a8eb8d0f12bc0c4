"""``serve``'s intake beside raw durable SQLite inserts on the same disk, in one run (issue 24).

Raw: one thread inserts the same messages, as compact JSON texts, into a file of the queue's
own schema (its table, its unique ``message_id``, its index of waiting messages: made by
opening a :class:`~sailthru_destination.serve.queue.MessageQueue` on it), in transactions of
``--batch`` rows, WAL, ``synchronous=FULL``: the ceiling of what any intake with the same
durability can reach on this disk. It gets its texts ready-made; the intake gets them as HTTP
requests it must read, check and store.

Intake: the real server (waitress, the WSGI app with its metrics when ``prometheus-client`` is
installed, the queue; no worker draining, so only the door is measured) in its own process on
loopback, posted ``/v1/batch`` requests of ``--batch`` messages each over keep-alive
connections, as Segment's SDKs do: once by one sender (each request waits for the last one's
200, so it pays a whole sync alone), once by ``--senders`` at a time (their requests share
syncs: the queue's group commit). A 200 means every message is committed with
``synchronous=FULL``.

Each of ``--runs`` runs measures all three, one after the other, so each ratio compares
figures taken moments apart. Prints the date, the load average before and after each run,
every run's rates and ratios, the best and the median, and one ``FIGURE {json}`` line per
figure (``bench/run_all.py``'s convention; value and ratio are the median run's).

    python bench/serve_intake.py [--size small|full] [--runs 3] [--messages N] [--senders 4]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sailthru_destination.serve.queue import MessageQueue

WRITE_KEY = "bench-write-key"
GOAL = 0.7
SIZES = {"small": (4_000, 1), "full": (20_000, 3)}
"""``--size``: (messages per run, runs)."""

_SERVER = """
import logging, sys, signal
logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" notes
from sailthru_destination.serve.app import SegmentIngest
from sailthru_destination.serve.limits import ServerLimits
from sailthru_destination.serve.metrics import ServeMetrics, available
from sailthru_destination.serve.queue import MessageQueue
from sailthru_destination.serve.server import make_server
queue = MessageQueue(sys.argv[1])
metrics = ServeMetrics(queue) if available() else None  # as `serve` runs it
server = make_server(SegmentIngest(queue, sys.argv[2], metrics=metrics), "127.0.0.1", 0,
                     ServerLimits(threads=int(sys.argv[3])))
print(server.effective_port, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server.run()
"""


def _message(n: int) -> dict[str, object]:
    return {
        "type": "track", "event": "Order Completed", "userId": f"user-{n % 997}",
        "messageId": str(uuid.uuid4()), "timestamp": "2026-12-06T20:00:00.000Z",
        "properties": {"order_id": f"o-{n}", "revenue": 19.99, "currency": "EUR",
                       "products": [{"product_id": "sku-1", "price": 19.99, "quantity": 1}]},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"},
                    "ip": "203.0.113.7"},
    }  # fmt: skip


def raw_rate(path: Path, bodies: list[list[tuple[str, str]]]) -> float:
    """Messages/s of plain durable inserts, ``len(bodies[i])`` rows per transaction."""
    MessageQueue(path).close()  # the queue's schema, exactly
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    start = time.perf_counter()
    count = 0
    for batch in bodies:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO messages (received, message_id, body) VALUES (?, ?, ?)",
            [(now, mid, body) for mid, body in batch],
        )
        db.execute("COMMIT")
        count += len(batch)
    elapsed = time.perf_counter() - start
    db.close()
    return count / elapsed


def intake_rate(folder: Path, requests: list[bytes], senders: int, threads: int) -> float:
    """Messages/s the server answers 200 for, ``senders`` keep-alive connections at once."""
    folder.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(folder / "queue.sqlite"), WRITE_KEY, str(threads)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        per_batch = len(json.loads(requests[0])["batch"])
        lanes = [requests[i::senders] for i in range(senders)]
        failures: list[str] = []

        def send(lane: list[bytes]) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for body in lane:
                conn.request("POST", "/v1/batch", body, {
                    "Authorization": auth, "Content-Type": "application/json"})  # fmt: skip
                reply = conn.getresponse()
                reply.read()
                if reply.status != 200:
                    failures.append(str(reply.status))
            conn.close()

        workers = [threading.Thread(target=send, args=(lane,)) for lane in lanes]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        if failures:
            raise SystemExit(f"intake refused {len(failures)} request(s): {failures[:3]}")
        return len(requests) * per_batch / elapsed
    finally:
        server.terminate()
        server.wait(10)


@dataclass
class Run:
    """One run's three rates (messages/s) and the load average around it."""

    raw: float
    alone: float
    many: float
    load: tuple[float, float]


def one_run(count: int, batch: int, senders: int, threads: int) -> Run:
    """Raw inserts, then one sender, then ``senders`` at once, on fresh files and messages."""
    load_before = os.getloadavg()[0]
    messages = [_message(n) for n in range(count)]
    texts = [(str(m["messageId"]), json.dumps(m, separators=(",", ":"))) for m in messages]
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    requests = [
        json.dumps({"batch": messages[i : i + batch], "sentAt": "2026-12-06T20:00:00Z"},
                   separators=(",", ":")).encode()
        for i in range(0, len(messages), batch)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        folder = Path(tmp)
        raw = raw_rate(folder / "raw.sqlite", batches)
        alone = intake_rate(folder / "one", requests, 1, threads)
        many = intake_rate(folder / "many", requests, senders, threads)
    return Run(raw, alone, many, (load_before, os.getloadavg()[0]))


def figure(name: str, value: float, unit: str, raw: float | None, ratio: float | None) -> str:
    """One ``FIGURE`` line (see bench/run_all.py)."""
    compared = ratio is not None
    return "FIGURE " + json.dumps({
        "figure": name, "value": round(value), "unit": unit,
        "baseline": "raw durable SQLite inserts, same disk and run" if compared else None,
        "baseline_value": round(raw) if compared and raw is not None else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "goal": f">= {GOAL}" if compared else None,
        "met": ratio >= GOAL if ratio is not None else None,
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="small: 4,000 messages, 1 run; full: 20,000, 3 runs")  # fmt: skip
    parser.add_argument("--messages", type=int, help="messages per run (overrides --size)")
    parser.add_argument("--runs", type=int, help="runs (overrides --size)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="the server's HTTP threads")
    args = parser.parse_args()
    count, runs = SIZES[args.size]
    count, runs = args.messages or count, args.runs or runs
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"messages: {count} per run in requests of {args.batch}; senders: {args.senders}; "
          f"server threads: {args.threads}; runs: {runs}")  # fmt: skip
    print(f"raw: durable SQLite inserts (1 thread, {args.batch} rows per transaction, WAL, "
          "synchronous=FULL, the queue's schema); intake: HTTP /v1/batch, 200 = committed "
          "with synchronous=FULL")  # fmt: skip
    done: list[Run] = []
    for number in range(1, runs + 1):
        run = one_run(count, args.batch, args.senders, args.threads)
        done.append(run)
        print(f"run {number}: load {run.load[0]:.2f} -> {run.load[1]:.2f}; raw {run.raw:,.0f}/s; "
              f"1 sender {run.alone:,.0f}/s = {run.alone / run.raw:.2f} of raw; "
              f"{args.senders} senders {run.many:,.0f}/s = {run.many / run.raw:.2f} of raw",
              flush=True)  # fmt: skip
    figures = []
    for name, rate_of in (
        ("intake, 1 sender", lambda r: r.alone),
        (f"intake, {args.senders} senders", lambda r: r.many),
    ):
        ratios = sorted(rate_of(r) / r.raw for r in done)
        median = sorted(done, key=lambda r: rate_of(r) / r.raw)[(len(done) - 1) // 2]
        print(f"{name}: best {ratios[-1]:.2f} of raw, median {statistics.median(ratios):.2f}")
        figures.append(figure(name, rate_of(median), "messages/s", median.raw,
                              rate_of(median) / median.raw))  # fmt: skip
    raws = sorted(r.raw for r in done)
    print(f"raw: best {raws[-1]:,.0f}/s, median {statistics.median(raws):,.0f}/s")
    print(figure("raw durable inserts", statistics.median(raws), "messages/s", None, None))
    for line in figures:
        print(line)


if __name__ == "__main__":
    main()
