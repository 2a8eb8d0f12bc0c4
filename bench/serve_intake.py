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

Each of ``--runs`` runs measures all three, taking turns ``--rounds`` times (each a share of
the messages), so that the shared machine's load swings hit the three alike and each ratio
compares figures taken moments apart. Prints the date, the load average before and after
each run, every run's rates and ratios, the server's CPU time per request (from /proc: the
load inflates it less than it does the rates), the best and the median, and one
``FIGURE {json}`` line per figure (``bench/run_all.py``'s convention; value and ratio are
the median run's).

    python bench/serve_intake.py [--size small|full] [--runs 3] [--messages N] [--senders 4]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
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


class Raw:
    """Plain durable inserts into a file of the queue's schema, one connection, one thread."""

    def __init__(self, path: Path) -> None:
        MessageQueue(path).close()  # the queue's schema, exactly
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")

    def insert(self, batches: list[list[tuple[str, str]]]) -> float:
        """Store ``batches``, one transaction each; returns the seconds it took."""
        start = time.perf_counter()
        for batch in batches:
            now = time.time()
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO messages (received, message_id, body) VALUES (?, ?, ?)",
                [(now, mid, body) for mid, body in batch],
            )
            self.db.execute("COMMIT")
        return time.perf_counter() - start

    def close(self) -> None:
        self.db.close()


def _cpu_seconds(pid: int) -> float | None:
    """CPU time process ``pid``'s threads have used so far, where /proc tells it (schedstat:
    nanoseconds, not the 10 ms ticks of /proc/<pid>/stat)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class Intake:
    """The real server in its own process, and senders posting to it over keep-alive."""

    def __init__(self, folder: Path, threads: int) -> None:
        folder.mkdir()
        self.server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(folder / "queue.sqlite"), WRITE_KEY,
             str(threads)],
            # Not the caller's folder: with -c it comes first on sys.path, and a checkout
            # there would be served instead of the code the bench imports.
            stdout=subprocess.PIPE, text=True, cwd=folder,
        )  # fmt: skip
        assert self.server.stdout is not None
        self.port = int(self.server.stdout.readline())
        self.auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        self.cpu = 0.0
        """The server's CPU seconds while posting (NaN where /proc cannot tell)."""

    def post(self, requests: list[bytes], senders: int) -> float:
        """Post ``requests`` from ``senders`` connections at once, each waiting for its 200
        before sending the next; returns the seconds until the last 200."""
        lanes = [requests[i::senders] for i in range(senders)]
        failures: list[str] = []

        def send(lane: list[bytes]) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            for body in lane:
                conn.request("POST", "/v1/batch", body, {
                    "Authorization": self.auth, "Content-Type": "application/json"})  # fmt: skip
                reply = conn.getresponse()
                reply.read()
                if reply.status != 200:
                    failures.append(str(reply.status))
            conn.close()

        workers = [threading.Thread(target=send, args=(lane,)) for lane in lanes]
        cpu_before = _cpu_seconds(self.server.pid)
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        cpu_after = _cpu_seconds(self.server.pid)
        if failures:
            raise SystemExit(f"intake refused {len(failures)} request(s): {failures[:3]}")
        if cpu_before is None or cpu_after is None:
            self.cpu = float("nan")
        else:
            self.cpu += cpu_after - cpu_before
        return elapsed

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(10)


@dataclass
class Run:
    """One run's three rates (messages/s) and the load average around it."""

    raw: float
    alone: float
    many: float
    load: tuple[float, float]
    cpu: tuple[float, float]
    """The server's CPU ms per request, one sender and many (NaN where unknown)."""


def one_run(count: int, batch: int, senders: int, threads: int, rounds: int) -> Run:
    """Raw inserts, one sender and ``senders`` at once, on fresh files and messages, taking
    turns ``rounds`` times (a round each of a share of the messages) so that the machine's
    load swings hit all three alike."""
    load_before = os.getloadavg()[0]
    messages = [_message(n) for n in range(count)]
    texts = [(str(m["messageId"]), json.dumps(m, separators=(",", ":"))) for m in messages]
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    requests = [
        json.dumps({"batch": messages[i : i + batch], "sentAt": "2026-12-06T20:00:00Z"},
                   separators=(",", ":")).encode()
        for i in range(0, len(messages), batch)
    ]  # fmt: skip
    seconds = {"raw": 0.0, "alone": 0.0, "many": 0.0}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        folder = Path(tmp)
        raw, alone, many = Raw(folder / "raw.sqlite"), Intake(folder / "one", threads), Intake(
            folder / "many", threads)  # fmt: skip
        try:
            for turn in range(rounds):
                seconds["raw"] += raw.insert(batches[turn::rounds])
                seconds["alone"] += alone.post(requests[turn::rounds], 1)
                seconds["many"] += many.post(requests[turn::rounds], senders)
        finally:
            raw.close()
            alone.close()
            many.close()
    return Run(
        count / seconds["raw"], count / seconds["alone"], count / seconds["many"],
        (load_before, os.getloadavg()[0]),
        (alone.cpu * 1000 / len(requests), many.cpu * 1000 / len(requests)),
    )  # fmt: skip


def _ms(value: float) -> str:
    return "?" if math.isnan(value) else f"{value:.2f} ms"


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
    parser.add_argument("--size", choices=("small", "full"), default="full",
                        help="small: 4,000 messages, 1 run; full: 20,000, 3 runs")  # fmt: skip
    parser.add_argument("--messages", type=int, help="messages per run (overrides --size)")
    parser.add_argument("--runs", type=int, help="runs (overrides --size)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="the server's HTTP threads")
    parser.add_argument("--rounds", type=int, default=5,
                        help="turns raw, one sender and many take within a run (fewer when a "
                        "turn would hold under 40 requests)")  # fmt: skip
    args = parser.parse_args()
    count, runs = SIZES[args.size]
    count, runs = args.messages or count, args.runs or runs
    rounds = max(1, min(args.rounds, count // args.batch // 40))
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"messages: {count} per run in requests of {args.batch}; senders: {args.senders}; "
          f"server threads: {args.threads}; runs: {runs} of {rounds} turns each")  # fmt: skip
    print(f"raw: durable SQLite inserts (1 thread, {args.batch} rows per transaction, WAL, "
          "synchronous=FULL, the queue's schema); intake: HTTP /v1/batch, 200 = committed "
          "with synchronous=FULL")  # fmt: skip
    done: list[Run] = []
    for number in range(1, runs + 1):
        run = one_run(count, args.batch, args.senders, args.threads, rounds)
        done.append(run)
        print(f"run {number}: load {run.load[0]:.2f} -> {run.load[1]:.2f}; raw {run.raw:,.0f}/s; "
              f"1 sender {run.alone:,.0f}/s = {run.alone / run.raw:.2f} of raw; "
              f"{args.senders} senders {run.many:,.0f}/s = {run.many / run.raw:.2f} of raw; "
              f"server CPU per request: {_ms(run.cpu[0])} alone, {_ms(run.cpu[1])} shared",
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
