"""``report.html``: one self-contained page a person opens instead of reading a run's JSON.

Built from a report folder (``summary.json``, ``errors.jsonl``, ``calls.jsonl``): the counts,
the failures grouped by reason with the fix for each, a timeline of calls per second with 429s
and retries marked (SVG drawn here, no chart library), and the call log, filterable by status
with a few lines of inline script. Nothing is fetched from the network.

Every value from the folder is escaped (HTML text, or JSON made safe inside a script tag); the
call log is already redacted, and the page masks API keys and drops secret-like payload keys
again in case a folder came from somewhere else. A big run's page stays small: the failures
list and the call log are sampled (the page says how), the timeline merges seconds into wider
bars.
"""

from __future__ import annotations

import html
import json
import logging
import os
import random
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..._private import private_file
from ...transport.auth import AUTH_PROBE
from ...transport.calllog import mask_key
from .report_assets import PAGE, SCRIPT, STYLE
from .report_reasons import classify
from .report_timeline import Timeline

__all__ = ["CALLS_SHOWN", "FAILURES_PER_REASON", "build_report_html", "write_report_html"]

log = logging.getLogger(__name__)

FAILURES_PER_REASON = 50
"""Failed records listed per reason; the rest are counted (all are in ``errors.jsonl``)."""

CALLS_SHOWN = 1000
"""At most this many calls in the call log view: failed ones first, then the first calls,
then a random sample of the rest."""

_FAILURES_OPEN = 10  # a reason with more failed records starts folded
_FAILED_CALLS_SHOWN = 500
_FIRST_CALLS_SHOWN = 200
_PAYLOAD_CHARS = 600
_SECRET_WORDS = ("secret", "sig", "password", "passwd", "token", "authorization")
_COUNTS = ("created", "updated", "unchanged", "sent", "deleted", "cleared", "kept", "skipped",
           "failed")


def write_report_html(folder: str | Path) -> Path:
    """Write ``report.html`` into the report ``folder`` and return its path."""
    path = Path(folder) / "report.html"
    # A name of its own, so a `report` run while the sync finishes never mixes two pages.
    tmp = path.with_name(f".report.html.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        private_file(tmp)  # the page shows customer data: the owner's only
        tmp.write_text(build_report_html(folder), encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def build_report_html(folder: str | Path) -> str:
    """The page of the report ``folder`` (missing files read as empty)."""
    folder = Path(folder)
    summary = _read_summary(folder / "summary.json")
    failures = _Failures.read(folder / "errors.jsonl")
    calls = _Calls.read(folder / "calls.jsonl")
    title = f"Sync report: {summary.get('model') or folder.name}"
    body = "\n".join((
        f"<h1>{_e(title)}</h1>",
        _heading_line(summary),
        _counts_section(summary, failures.total, calls.total),
        failures.section(),
        calls.timeline.section(),
        calls.section(),
    ))
    return PAGE.format(title=_e(title), style=STYLE, body=body,
                       data=_script_json(calls.shown), script=SCRIPT)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _script_json(value: object) -> str:
    """JSON that cannot end its ``<script>`` element early nor open a comment."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSON-lines file; a torn or foreign line is skipped (and logged)."""
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except OSError:
        return
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                log.warning("%s line %d is not JSON; left out of the page", path.name, number)
                continue
            if isinstance(item, dict):
                yield item


def _safe_url(url: object) -> str:
    """``url`` without a user name or password."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
    except ValueError:  # a bad port or bracket: show nothing rather than a password
        return "(an unreadable URL)"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _heading_line(summary: dict[str, Any]) -> str:
    if not summary:
        return "<p class='note'>summary.json is missing: the run did not finish.</p>"
    bits = [f"object <b>{_e(summary.get('object', 'users'))}</b>"]
    if summary.get("status"):
        bits.append(f"status <b id='run-status'>{_e(summary['status'])}</b>")
    if summary.get("api_url"):
        bits.append(f"to {_e(_safe_url(summary['api_url']))}")
    if summary.get("api_key"):
        bits.append(f"key {_e(mask_key(str(summary['api_key'])))}")
    bits.append(f"path {_e(summary.get('path', 'per-user'))}")
    if summary.get("jobs"):
        bits.append(f"{_e(summary['jobs'])} job(s)")
    return f"<p class='meta'>{' · '.join(bits)}</p>"


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def _counts_section(summary: dict[str, Any], failures_listed: int, calls_logged: int) -> str:
    # A sync summary has "counts"; serve's has "results" (messages per outcome), and no rows
    # or calls of its own: the messages handled are its rows, and its calls are those logged.
    counts = summary.get("counts") or summary.get("results")
    if not isinstance(counts, dict):
        counts = {}
    rows = summary.get("rows")
    if rows is None and "results" in summary:
        rows = sum(n for n in counts.values() if isinstance(n, int))
    cards = [("rows read", rows or 0, "rows")]
    for name in _COUNTS:
        if counts.get(name) or name in ("created", "updated", "unchanged", "failed"):
            cards.append((name, counts.get(name, 0), name))
    if not summary:
        cards.append(("failed", failures_listed, "failed"))
    calls = summary.get("api_calls", calls_logged if "results" in summary else 0)
    per_changed = summary.get("calls_per_changed_row")
    if not isinstance(per_changed, (int, float)):  # a summary from before it was written
        changed = sum(int(counts.get(n, 0) or 0) for n in ("created", "updated", "deleted",
                                                          "cleared", "sent"))
        per_changed = (calls / changed) if changed else 0.0
    # The run's own figure, so the page says what the console said.
    cards += [("API calls", calls, "api_calls"),
              ("calls per changed row", float(per_changed), "calls_per_changed"),
              ("lists created", summary.get("lists_created", 0), "lists_created"),
              ("seconds", float(summary.get("seconds", 0.0) or 0.0), "seconds")]
    items = "".join(
        f"<div class='card{' bad' if key == 'failed' and value else ''}' data-count='{_e(key)}'>"
        f"<div class='n'>{_number(value)}</div><div class='l'>{_e(label)}</div></div>"
        for label, value, key in cards)
    return f"<h2>Counts</h2><div class='cards' id='counts'>{items}</div>"


@dataclass
class _Group:
    title: str
    fix: str
    count: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Failures:
    """The failed records grouped by kind of reason, each group's first records kept."""

    groups: dict[str, _Group] = field(default_factory=dict)
    total: int = 0

    @classmethod
    def read(cls, path: Path) -> _Failures:
        failures = cls()
        for item in _json_lines(path):
            failures.total += 1
            reason = classify(str(item.get("reason", "")))
            group = failures.groups.setdefault(reason.title, _Group(reason.title, reason.fix))
            group.count += 1
            if len(group.records) < FAILURES_PER_REASON:
                group.records.append(item)
        return failures

    def section(self) -> str:
        if not self.total:
            return "<h2>Failures</h2><p id='no-failures'>No record failed.</p>"
        groups = sorted(self.groups.values(), key=lambda g: -g.count)
        parts = [f"<h2>Failures <small>({self.total:,} record(s); all are in errors.jsonl)"
                 "</small></h2><table id='reasons'><thead><tr><th>reason</th><th>records</th>"
                 "<th>fix</th></tr></thead><tbody>"]
        parts += [f"<tr class='reason'><td>{_e(g.title)}</td><td>{g.count:,}</td>"
                  f"<td class='fix'>{_e(g.fix)}</td></tr>" for g in groups]
        parts.append("</tbody></table>")
        for group in groups:
            # A long list starts folded, so the chart and the call log stay in reach.
            shown = " open" if group.count <= _FAILURES_OPEN else ""
            parts.append(f"<details class='group'{shown}><summary>{_e(group.title)}: "
                         f"{group.count:,} record(s)</summary><table class='failures'><thead>"
                         "<tr><th>record</th><th>where</th><th>field</th><th>reason</th></tr>"
                         "</thead><tbody>")
            for item in group.records:
                parts.append(
                    "<tr class='failure'>" + "".join(
                        f"<td>{_e(item.get(key) if item.get(key) is not None else '')}</td>"
                        for key in ("record", "where", "field", "reason")) + "</tr>")
            more = group.count - len(group.records)
            if more > 0:
                parts.append(f"<tr class='more'><td colspan='4'>… and {more:,} more with this "
                             "reason (see errors.jsonl)</td></tr>")
            parts.append("</tbody></table></details>")
        return "".join(parts)


def _redacted(call: dict[str, Any]) -> dict[str, Any]:
    """The fields the page shows of one call, with keys masked and secret-like keys dropped."""
    payload = call.get("payload")
    if isinstance(payload, dict):
        payload = {k: ("[redacted]" if any(w in str(k).lower() for w in _SECRET_WORDS) else v)
                   for k, v in payload.items()}
    text = json.dumps(payload, ensure_ascii=False, default=str)
    if len(text) > _PAYLOAD_CHARS:
        text = text[:_PAYLOAD_CHARS] + f"… ({len(text):,} characters)"
    status, when = call.get("status"), call.get("time")
    numeric = isinstance(when, (int, float)) and not isinstance(when, bool)
    return {
        "t": when if numeric else None, "m": str(call.get("method", "")),
        "e": str(call.get("endpoint", "")), "a": call.get("attempt"),
        "s": status if isinstance(status, int) else None,
        "c": call.get("code"), "msg": str(call.get("message") or call.get("error") or ""),
        "d": call.get("duration"), "p": text,
        "k": mask_key(str(call.get("api_key", ""))),
        "x": bool(call.get("expected")),  # "User not found" after a delete: not a failure
    }


def _failed(call: dict[str, Any]) -> bool:
    status = call.get("status")
    return not isinstance(status, int) or status >= 300 or call.get("code") is not None


_USER_NOT_FOUND = 99
_CHECKED_USER = str(AUTH_PROBE[1]["id"])  # a user that cannot exist: read to check the keys


def _user_id(call: dict[str, Any]) -> str | None:
    payload = call.get("payload")
    if call.get("endpoint") != "user" or not isinstance(payload, dict):
        return None
    return None if payload.get("id") is None else str(payload["id"])


def _expected(call: dict[str, Any], deleted: set[str]) -> bool:
    """Whether a failed-looking call is what a delete wants: "User not found" (error 99) for
    a user this run deleted, from the delete itself or from the look that verifies it; or the
    credentials check before the run, whose "not found" proves the key and secret."""
    user = _user_id(call)
    if user is None:
        return False
    if call.get("method") == "GET" and user == _CHECKED_USER:
        return call.get("code") == _USER_NOT_FOUND
    if call.get("method") == "DELETE":
        deleted.add(user)
    return call.get("code") == _USER_NOT_FOUND and user in deleted


@dataclass
class _Calls:
    """The call log read once: the timeline's counts and the calls the page shows."""

    total: int = 0
    failed: int = 0
    shown: list[dict[str, Any]] = field(default_factory=list)
    sampled: bool = False
    timeline: Timeline = field(default_factory=Timeline)
    statuses: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path) -> _Calls:
        calls = cls()
        failed: list[dict[str, Any]] = []
        first: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []
        rest_seen = 0
        rest_size = CALLS_SHOWN - _FIRST_CALLS_SHOWN
        sampler = random.Random(0)  # the same folder gives the same page
        deleted: set[str] = set()
        for call in _json_lines(path):
            calls.total += 1
            calls.timeline.add(call)
            status = call.get("status")
            # The filter's values are what the script's String(status) gives: null, no reply.
            calls.statuses[str(status) if isinstance(status, int) else "null"] += 1
            if _expected(call, deleted):
                call = {**call, "expected": True}
            elif _failed(call):
                calls.failed += 1
                if len(failed) < _FAILED_CALLS_SHOWN:
                    failed.append(_redacted(call))
                    continue
            if len(first) < _FIRST_CALLS_SHOWN:
                first.append(_redacted(call))
                continue
            rest_seen += 1  # reservoir sampling: each later call equally likely to be kept
            if len(rest) < rest_size:
                rest.append(_redacted(call))
            else:
                slot = sampler.randrange(rest_seen)
                if slot < rest_size:
                    rest[slot] = _redacted(call)
        # Fewer failed calls than their share leave room for more of the sample.
        room = CALLS_SHOWN - len(failed) - len(first)
        if len(rest) > room:
            rest = sampler.sample(rest, room)
        calls.shown = sorted(failed + first + rest, key=lambda c: float(c["t"] or 0.0))
        calls.sampled = len(calls.shown) < calls.total
        return calls

    def section(self) -> str:
        if self.sampled:
            failed = min(self.failed, _FAILED_CALLS_SHOWN)
            kept = ([f"the first {failed:,} failed call{'s' if failed > 1 else ''}"]
                    if failed else [])
            kept.append(f"the first {_FIRST_CALLS_SHOWN:,} {'other ' if failed else ''}calls")
            note = (f"Showing {len(self.shown):,} of {self.total:,} calls to keep this page "
                    f"small: {', '.join(kept)} and a random sample of the rest. Every call is "
                    "in calls.jsonl.")
        else:
            note = f"All {self.total:,} calls, as sent (API key masked, no signature or secret)."
        options = "".join(
            f"<option value='{_e(s)}'>{_e('no reply' if s == 'null' else s)} ({n:,})</option>"
            for s, n in sorted(self.statuses.items()))
        return (
            "<h2>Call log</h2>"
            f"<p class='note' id='calls-note'>{_e(note)}</p>"
            "<label>Show <select id='status-filter'><option value='all'>all</option>"
            "<option value='failed'>failed or retried</option>"
            f"<option value='429'>429 only</option>{options}</select></label> "
            "<span id='calls-count'></span>"
            "<table id='calls'><thead><tr><th>time</th><th>call</th><th>attempt</th>"
            "<th>status</th><th>answer</th><th>ms</th><th>payload</th></tr></thead>"
            "<tbody></tbody></table>"
        )
