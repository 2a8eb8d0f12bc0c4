"""/job: export_list_data (a CSV the fake serves itself), bulk update, list and purchase import.

Jobs run asynchronously, as Sailthru's do: a job is checked when it is posted (a bad
request is refused at once), then does its work ``job_seconds`` after the POST (by the
fake's clock), whether or not its reply reached the caller; until then GET /job says
``pending``, and after it the job completes on its ``job_polls``-th GET (configurable, to
test polling, timeouts and failed jobs). ``job_polls=0`` runs a job inside its POST.
A ``purchase_import`` file holds one POST /purchase payload per line (the format of
:mod:`sailthru_destination.sync.bulkload.jobfile`); each line becomes a completed purchase, readable
by GET /purchase, and a line that cannot be imported is counted in ``errors`` and named in
``error_lines`` (``{line, error}``), never silently dropped. Imported purchases trigger
nothing (as in Sailthru, where they do not start flows).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from ...sync.bulkload.jobfile import read_line
from ...transport._protocol import is_loopback_url
from .._errors import ApiError, invalid_parameter
from .._forms import Form
from .._state import State, rfc2822_now
from .._wire import Reply, Request
from ._commerce import post_purchase
from ._lists import add_emails, unknown_list
from ._users import post_user

__all__ = [
    "EXPORT_PREFIX", "download_export", "expire_exports", "get_job", "post_job", "run_due_jobs",
]

EXPORT_PREFIX = "_export/"
_UPDATE_SOURCES = ("emails", "url", "file", "query")

Answer = tuple[int, dict[str, Any]]


def post_job(state: State, payload: Mapping[str, Any], form: Form) -> Answer:
    """POST /job: start a job; answers ``{job_id, name, status: "pending"}``."""
    kind = payload.get("job")
    work: Callable[[], dict[str, Any]]
    if kind == "export_list_data":
        name = str(payload.get("list") or "")
        if not name:
            raise invalid_parameter("Missing required parameter: list")
        with state.lock:
            if state.find_list(name) is None:
                raise unknown_list(name)
        job = _new_job(state, kind, f"List Export: {name}", {"list": name})
        work = dict
    elif kind == "update":
        lines, shared = _update_lines(payload, form)
        job = _new_job(state, kind, "Bulk Update", {"processed": 0, "errors": 0})
        work = lambda: _run_update(state, lines, shared)  # noqa: E731
    elif kind == "purchase_import":
        if "file" not in form.files:
            raise invalid_parameter("Missing required parameter: file")
        text = form.files["file"].decode("utf-8")
        job = _new_job(state, kind, "Purchase Import",
                       {"processed": 0, "errors": 0, "error_lines": []})
        work = lambda: _run_purchase_import(state, text)  # noqa: E731
    elif kind == "import":
        name = str(payload.get("list") or "")
        emails = _import_emails(payload, form)
        job = _new_job(state, kind, "List Import", {"list": name, "processed": 0})
        work = lambda: {"processed": _run_import(state, name, emails)}  # noqa: E731
    else:
        raise invalid_parameter(f"Unsupported job type: {kind}")
    with state.lock:
        job["_work"] = work
        job["_due"] = state.clock() + (0.0 if state.job_polls == 0 else state.job_seconds)
        run_due_jobs(state)
        if state.job_polls == 0:
            _do(state, job)
            _finish(state, job)
        return 200, _public(job)


def run_due_jobs(state: State) -> None:
    """Do the work of every job whose time has come (the fake's stand-in for a worker)."""
    with state.lock:
        now = state.clock()
        for job in list(state.jobs.values()):
            if "_work" in job and job["_due"] <= now:
                _do(state, job)


def _do(state: State, job: dict[str, Any]) -> None:
    work = job.pop("_work", None)
    if work is not None and not state.job_fails:
        job.update(work())


def get_job(state: State, payload: Mapping[str, Any]) -> Answer:
    """GET /job ``{job_id}``: the status; a completed export carries ``export_url``."""
    job_id = str(payload.get("job_id") or "")
    run_due_jobs(state)
    with state.lock:
        job = state.jobs.get(job_id)
        if job is None:
            # (inferred) status and text for an unknown job id.
            raise invalid_parameter(f"Invalid job_id: {job_id}")
        job["polls"] += 1
        if job["status"] == "pending" and "_work" not in job and state.job_polls is not None and (
            job["polls"] >= state.job_polls
        ):
            _finish(state, job)
        return 200, _public(job)


def download_export(state: State, request: Request) -> Reply:
    """GET /_export/<token>.csv: the export file, 404 once expired (like the real signed URL)."""
    token = request.path.strip("/")[len(EXPORT_PREFIX):].removesuffix(".csv")
    with state.lock:
        state.calls[("GET", "_export")] += 1
        export = state.exports.get(token)
        if request.method != "GET" or export is None or export["expired"]:
            return Reply(404, b"Not Found", content_type="text/plain")
        return Reply(200, export["csv"].encode("utf-8"), content_type="text/csv; charset=utf-8")


def expire_exports(state: State, job_id: str | None) -> None:
    """Expire one job's export (or all): GET /job says ``expired: true``, the file 404s."""
    with state.lock:
        for job in state.jobs.values():
            if job_id is None or job["job_id"] == job_id:
                job["expired"] = job.get("export_url") is not None
                token = job.pop("_token", None)
                if token is not None:
                    state.exports[token]["expired"] = True


def _new_job(state: State, kind: str, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    with state.lock:
        job: dict[str, Any] = {
            "job_id": state.new_id(),
            "name": name,
            "type": kind,
            "status": "pending",
            "start_time": rfc2822_now(),
            "end_time": None,
            "polls": 0,
            **extra,
        }
        state.jobs[job["job_id"]] = job
        return job


def _finish(state: State, job: dict[str, Any]) -> None:
    job["end_time"] = rfc2822_now()
    if state.job_fails:
        job["status"] = "error"
        return
    job["status"] = "completed"
    if job["type"] == "export_list_data":
        token = state.new_id()
        state.exports[token] = {"csv": _export_csv(state, job["list"]), "expired": False}
        job["_token"] = token
        job["export_url"] = f"{state.base_url}/{EXPORT_PREFIX}{token}.csv"
        if state.exports_expire:
            job["expired"] = True
            state.exports[job.pop("_token")]["expired"] = True


def _public(job: Mapping[str, Any]) -> dict[str, Any]:
    answer = {k: copy.deepcopy(v) for k, v in job.items() if not k.startswith("_")}
    answer.pop("polls", None)
    if answer.get("expired"):
        answer.pop("export_url", None)
    else:
        answer.pop("expired", None)
    return answer


def _export_csv(state: State, name: str) -> str:
    """Columns as third-party connectors saw them: Profile Id, email, extid, one per var."""
    sids: set[str] = set()
    for record in state.lists:
        if record["name"] == name:
            sids |= state.list_members[record["list_id"]]
    users = [state.users[sid] for sid in sorted(sids) if sid in state.users]
    var_names = sorted({name for user in users for name in user["vars"]})
    out = io.StringIO()
    # "\r\n" as Python's csv writes by default: with "\n" alone a var holding a carriage
    # return went out unquoted and split its row in two.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Profile Id", "email", "extid", *var_names])
    for user in users:
        keys = user["keys"]
        writer.writerow([
            keys["sid"], keys.get("email", ""), keys.get("extid", ""),
            *(_cell(user["vars"].get(var)) for var in var_names),
        ])
    return out.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _update_lines(
    payload: Mapping[str, Any], form: Form
) -> tuple[list[dict[str, Any] | None], Mapping[str, Any]]:
    """The lines of a bulk update (each as a POST /user) and its shared ``update``, checked."""
    given = [s for s in _UPDATE_SOURCES if payload.get(s) or (s == "file" and "file" in form.files)]
    if len(given) != 1:
        raise invalid_parameter("Exactly one of emails, url, file, query is required")
    shared = payload.get("update") or {}
    if not isinstance(shared, Mapping):
        raise invalid_parameter("Invalid parameter: update must be an object")
    source = given[0]
    if source == "query":
        raise invalid_parameter("The fake does not evaluate query updates: use emails, url or file")
    if source == "emails":
        return [{"id": e} for e in _split(payload["emails"])], shared
    text = _fetch(str(payload["url"])) if source == "url" else form.files["file"].decode()
    return [read_line(line) for line in text.splitlines() if line.strip()], shared


def _run_update(
    state: State, lines: list[dict[str, Any] | None], shared: Mapping[str, Any]
) -> dict[str, Any]:
    """Apply a bulk update: each line (or email) as a POST /user, plus the shared ``update``."""
    processed = errors = 0
    for line in lines:
        try:
            if line is None:
                raise invalid_parameter("Invalid JSON line")
            post_user(state, _merged(line, shared))
            processed += 1
        except ApiError:
            errors += 1
    return {"processed": processed, "errors": errors}


def _run_purchase_import(state: State, text: str) -> dict[str, Any]:
    """Import each line as a completed purchase; count them, and name the lines refused."""
    processed, problems = 0, []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        line = read_line(raw)
        try:
            if line is None:
                raise invalid_parameter("Invalid JSON line: each line must be a JSON object")
            post_purchase(state, {**line, "incomplete": 0})
            processed += 1
        except ApiError as exc:
            problems.append({"line": number, "error": exc.message})
    return {"processed": processed, "errors": len(problems), "error_lines": problems}


def _import_emails(payload: Mapping[str, Any], form: Form) -> list[str]:
    if not str(payload.get("list") or ""):
        raise invalid_parameter("Missing required parameter: list")
    if payload.get("emails"):
        return _split(payload["emails"])
    if "file" in form.files:
        rows = csv.reader(io.StringIO(form.files["file"].decode()))
        return [row[0].strip() for row in rows if row and "@" in row[0]]
    raise invalid_parameter("Missing required parameter: emails or file")


def _run_import(state: State, name: str, emails: list[str]) -> int:
    with state.lock:
        record = state.find_list(name) or state.create_list(name)
        return add_emails(state, record, emails)


def _fetch(url: str) -> str:
    if not is_loopback_url(url) or not url.startswith(("http://", "https://")):
        raise invalid_parameter("The fake fetches update files from loopback URLs only")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback only)
        data: bytes = response.read()
    return data.decode("utf-8")


def _merged(line: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(line)
    for name, value in shared.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def _split(emails: object) -> list[str]:
    if isinstance(emails, list):
        return [str(e).strip() for e in emails if str(e).strip()]
    return [e.strip() for e in str(emails).replace("\n", ",").split(",") if e.strip()]
