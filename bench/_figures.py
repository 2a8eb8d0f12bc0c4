"""What every benchmark that ``bench/run_all.py`` runs shares: ``--size``, the run's header
line, and the ``FIGURE {json}`` lines run_all collects into ``bench/RESULTS.md``.

A FIGURE line is one measured figure as JSON: ``figure`` (a short name), ``value``, ``unit``,
``baseline`` (what it is compared with, or null), ``baseline_value``, ``ratio`` (value over the
baseline's value, or over the ceiling), ``goal`` (such as ``">= 0.95"``) and ``met``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from datetime import datetime, timezone

__all__ = ["PREFIX", "add_size", "figure", "goal_met", "header", "load"]

PREFIX = "FIGURE "
_GOAL = re.compile(r"^\s*(>=|<=|>|<|==)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$")


def add_size(parser: argparse.ArgumentParser) -> None:
    """Add ``--size small|full``: small runs in seconds to a minute, full at the issue's sizes."""
    parser.add_argument("--size", choices=("small", "full"), default="full",
                        help="small: seconds to a minute, for a quick look; full (default): "
                        "the sizes the figures are quoted at")


def load() -> str:
    """The machine's load averages, as printed beside every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def header(what: str) -> None:
    """Print the run's first line: date, load and machine, then what is measured."""
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {load()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}: {what}", flush=True)


def goal_met(value: float, goal: str | None) -> bool | None:
    """Whether ``value`` meets ``goal`` (``">= 0.95"``, ``"<= 10"``); None without a goal."""
    if goal is None:
        return None
    match = _GOAL.match(goal)
    if match is None:
        raise ValueError(f"a goal is an operator and a number, such as '>= 0.95', got {goal!r}")
    operator, bound = match.group(1), float(match.group(2))
    return {">=": value >= bound, "<=": value <= bound, ">": value > bound,
            "<": value < bound, "==": value == bound}[operator]


def figure(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: str | None = None,
    baseline_value: float | None = None,
    ratio: float | None = None,
    goal: str | None = None,
) -> None:
    """Print one FIGURE line. ``ratio`` defaults to value / baseline_value; ``goal`` applies to
    the ratio when there is one, else to the value."""
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    judged = ratio if ratio is not None else value
    line = {
        "figure": name, "value": round(value, 4), "unit": unit, "baseline": baseline,
        "baseline_value": baseline_value, "ratio": None if ratio is None else round(ratio, 4),
        "goal": goal, "met": goal_met(judged, goal),
    }
    print(PREFIX + json.dumps(line, ensure_ascii=False), flush=True)
