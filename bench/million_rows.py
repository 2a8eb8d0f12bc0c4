"""A million rows: the ``sync`` CLI's time and peak memory on a big CSV model, and its cost curve.

For each size (10k and 100k rows; ``--size full`` adds 1,000,000) a deterministic CSV model
is written, a fake Sailthru is started in its own process (its defaults: no latency, the
documented limits, user 300/s), and the real ``sailthru-destination sync`` CLI runs as a
subprocess three times on one state:

1. the initial sync, through the job API (``--bulk always``);
2. a no-change re-run (``--bulk auto``: nothing to export);
3. a 1 % change (every hundredth row's ``ltv``), through the per-user path (``--bulk never``),
   so it is paced at the user ceiling: 10,000 rows at 300/s is 33 s at 1M.

Each run's wall time, CPU and peak RSS (max RSS from ``wait4``: the CLI's own, never the
fake's) are printed beside the linear extrapolation from the smallest size, then one
``FIGURE {json}`` line per figure (``bench/run_all.py``): the issue's goals apply at 1M.

    python bench/million_rows.py [--size small|full] [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _cli import COMMAND, start_fake

_GROUPS = ("Newsletter", "High LTV", "Churn Risk", "Beta", "Sale Alerts")
_CITIES = ("Lyon", "Austin", "Tokyo", "Porto", "Oslo")
_HEADER = "id,email,first_name,last_name,city,ltv,orders,vip,signed_up,groups\n"
_TYPES = "ltv=float,orders=int,vip=bool,signed_up=date"
_SIZES = {"small": (10_000, 100_000), "full": (10_000, 100_000, 1_000_000)}
_RUNS = ("initial", "no-change", "change")
_GOALS = {  # at 1,000,000 rows (issue 26, item 4)
    ("initial", "failed"): ("== 0", lambda v: v == 0),
    ("no-change", "seconds"): ("<= 10", lambda v: v <= 10),
    # ~35 s: 10,000 rows at the 300/s ceiling are 33.3 s; "about" read as within 10 % of 35.
    ("change", "seconds"): ("<= 38.5 (~35)", lambda v: v <= 38.5),
    **{(run, "peak_mb"): ("<= 250", lambda v: v <= 250) for run in _RUNS},
}


def write_model(path: Path, rows: int, *, changed_every: int = 0) -> None:
    """A CSV of ``rows`` users; ``changed_every`` > 0 changes every such row's ``ltv``."""
    rng = random.Random(1)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(_HEADER)
        lines = []
        for n in range(rows):
            ltv = round(rng.uniform(0, 900), 2)
            if changed_every and n % changed_every == 0:
                ltv += 1000
            groups = ";".join(g for g in _GROUPS if rng.random() < 0.3)
            lines.append(
                f"{n},user{n}@example.com,F{n},L{n % 977},{rng.choice(_CITIES)},{ltv},"
                f"{rng.randint(0, 30)},{'yes' if rng.random() < 0.1 else 'no'},"
                f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},{groups}\n")
            if len(lines) >= 10_000:
                handle.writelines(lines)
                lines.clear()
        handle.writelines(lines)


def sync(url: str, model: Path, home: Path, *extra: str) -> dict[str, Any]:
    """One ``sync`` CLI run: its summary, wall time, CPU and peak RSS."""
    env = {**os.environ, "SAILTHRU_API_KEY": "bench-key", "SAILTHRU_API_SECRET": "bench-secret",
           "SAILTHRU_API_URL": url}
    report = home / f"report-{time.monotonic_ns()}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [*COMMAND, "sync", str(model), "--home", str(home), "--report-dir", str(report),
         "--name", "million", "--types", _TYPES, "--no-progress", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.stderr.write(process.stderr.read().decode() if process.stderr else "")
        raise SystemExit(f"sync failed with status {status}")
    summary: dict[str, Any] = json.loads((report / "summary.json").read_text())
    return {"rows": summary["rows"], "failed": summary["failed"], "calls": summary["api_calls"],
            "path": summary["path"], "changed": sum(
                n for k, n in summary["counts"].items() if k not in ("unchanged", "failed")),
            "seconds": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024}  # KiB on Linux


def measure(rows: int, folder: Path) -> dict[str, dict[str, Any]]:
    """The three runs at one size, on one state and one fake."""
    model, changed = folder / f"model-{rows}.csv", folder / f"changed-{rows}.csv"
    write_model(model, rows)
    write_model(changed, rows, changed_every=100)
    home = folder / f"home-{rows}"
    fake, url = start_fake()  # its defaults: latency 0, user 300/s
    try:
        return {"initial": sync(url, model, home, "--bulk", "always"),
                "no-change": sync(url, model, home, "--bulk", "auto"),
                "change": sync(url, changed, home, "--bulk", "never")}
    finally:
        fake.terminate()
        fake.wait()
        model.unlink()
        changed.unlink()


def _load() -> str:
    """The 1, 5 and 15 minute load averages: the machine is shared, so say how busy it was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(results: dict[int, dict[str, dict[str, Any]]]) -> None:
    """The cost curve, each figure beside the linear extrapolation from the smallest size."""
    base_size = min(results)
    print(f"{'rows':>10} {'run':<10} {'wall s':>8} {'linear s':>9} {'cpu s':>7} "
          f"{'peak MB':>8} {'linear MB':>10} {'changed':>8} {'failed':>6} {'calls':>7}  path")
    for size, runs in sorted(results.items()):
        for run in _RUNS:
            got, base = runs[run], results[base_size][run]
            factor = size / base_size
            print(f"{size:>10,} {run:<10} {got['seconds']:>8.1f} {base['seconds'] * factor:>9.1f} "
                  f"{got['cpu']:>7.1f} {got['peak_mb']:>8.0f} {base['peak_mb'] * factor:>10.0f} "
                  f"{got['changed']:>8,} {got['failed']:>6} {got['calls']:>7,}  {got['path']}")
    for size, runs in sorted(results.items()):
        for run in _RUNS:
            for metric, unit in (("seconds", "s"), ("peak_mb", "MB"), ("failed", "rows")):
                if metric == "failed" and run != "initial":
                    continue
                value = runs[run][metric]
                base = results[base_size][run][metric] * size / base_size
                goal, check = _GOALS.get((run, metric), (None, None)) if size == 1_000_000 \
                    else (None, None)
                linear = metric != "failed" and size != base_size
                print("FIGURE " + json.dumps({
                    "figure": f"{run} {metric} at {size:,} rows", "value": round(value, 2),
                    "unit": unit,
                    "baseline": f"linear from {base_size:,} rows" if linear else None,
                    "baseline_value": round(base, 2) if linear else None,
                    "ratio": round(value / base, 3) if linear and base else None,
                    "goal": goal, "met": check(value) if check else None}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="small: 10k and 100k rows; full: also 1M (6 to 25 min)")
    parser.add_argument("--sizes", help="comma-separated row counts (replaces --size)")
    args = parser.parse_args()
    sizes = ([int(n) for n in args.sizes.split(",")] if args.sizes
             else list(_SIZES[args.size]))
    load_before = _load()
    results: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="million-rows-") as folder:
        for size in sizes:
            results[size] = measure(size, Path(folder))
            print(f"measured {size:,} rows (load {_load()})", file=sys.stderr, flush=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; "
          f"load average before {load_before}, after {_load()}")
    print(f"fake: its defaults (latency 0, user 300/s) in its own process; CSV with "
          f"--types {_TYPES}")
    report(results)


if __name__ == "__main__":
    main()
