"""``serve``'s intake beside raw durable SQLite inserts on the same disk, in one run (issue 24).

Raw: one thread inserts the same message texts into a table of the queue's schema in
transactions of ``--batch`` rows, WAL, ``synchronous=FULL``: the ceiling of what any intake
with the same durability can reach on this disk.

Intake: the real server (waitress, the WSGI app, the queue; no worker draining, so only the
door is measured) in its own process on loopback, posted ``/v1/batch`` requests of
``--batch`` messages each over keep-alive connections, as Segment's SDKs do: once by one
sender (each request waits for the last one's 200, so it pays a whole sync alone), once by
``--senders`` at a time (their requests share syncs: the queue's group commit). A 200 means
every message is committed with ``synchronous=FULL``.

Prints the date, the load average before and after, both rates and their ratio.

    python bench/serve_intake.py [--messages 20000] [--batch 100] [--senders 4]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

WRITE_KEY = "bench-write-key"

_SERVER = """
import logging, sys, signal
logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" notes
from sailthru_destination.serve.app import SegmentIngest
from sailthru_destination.serve.limits import ServerLimits
from sailthru_destination.serve.queue import MessageQueue
from sailthru_destination.serve.server import make_server
queue = MessageQueue(sys.argv[1])
server = make_server(SegmentIngest(queue, sys.argv[2]), "127.0.0.1", 0,
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


def raw_rate(folder: Path, bodies: list[list[tuple[str, str]]]) -> float:
    """Messages/s of plain durable inserts, ``len(bodies[i])`` rows per transaction."""
    db = sqlite3.connect(str(folder / "raw.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, received REAL NOT NULL,"
        " message_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, status TEXT, detail TEXT,"
        " retryable INTEGER)"
    )
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="the server's HTTP threads")
    args = parser.parse_args()
    load_before = os.getloadavg()
    messages = [_message(n) for n in range(args.messages)]
    texts = [(str(m["messageId"]), json.dumps(m, separators=(",", ":"))) for m in messages]
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    requests = [
        json.dumps({"batch": messages[i : i + args.batch], "sentAt": "2026-12-06T20:00:00Z"},
                   separators=(",", ":")).encode()
        for i in range(0, len(messages), args.batch)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        folder = Path(tmp)
        raw = raw_rate(folder, batches)
        alone = intake_rate(folder / "one", requests, 1, args.threads)
        many = intake_rate(folder / "many", requests, args.senders, args.threads)
    load_after = os.getloadavg()
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"messages: {args.messages} in requests of {args.batch}; senders: {args.senders}; "
          f"server threads: {args.threads}")  # fmt: skip
    print(f"raw durable SQLite inserts (1 thread, {args.batch} rows per transaction, WAL, "
          f"synchronous=FULL): {raw:,.0f} messages/s")  # fmt: skip
    for senders, rate in ((1, alone), (args.senders, many)):
        print(f"serve intake, {senders} sender(s) (HTTP /v1/batch, 200 = committed with "
              f"synchronous=FULL): {rate:,.0f} messages/s, {rate / raw:.2f} of raw")  # fmt: skip


if __name__ == "__main__":
    main()
