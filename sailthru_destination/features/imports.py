"""Sailthru → host: import list members through the job API, and map them into host profiles.

:class:`ListImporter` starts one ``export_list_data`` job per list, polls it with backoff
(:class:`PollPolicy`, waits through :meth:`SailthruApi.wait`, time from an injectable clock),
downloads the CSV the job points to and stream-parses it: memory stays flat in the number of
rows unless ``merge=True`` is asked (merging keeps one record per unique user until every list
is read). An export URL that has expired (``expired: true``, or a 403/404/410 on download)
restarts the job once.

CSV columns (third-party connectors saw ``Profile Id``, ``email``, ``extid``, then one column
per var; ``Email Hash`` also appears): ``Profile Id`` gives :attr:`ImportedUser.sid`,
``email``/``extid`` the keys, ``Email Hash`` is dropped, and every other column becomes a var
(see :data:`KEY_COLUMNS` and :data:`IGNORED_COLUMNS`; ``ignore_columns`` adds more). Column
names are matched case-insensitively. Cells are text as Sailthru wrote them; an empty cell means
"not set" (CSV cannot tell the two apart) and is left out of ``vars``.

:func:`apply_import` maps one imported user onto a host profile with a mode per field
(``set``, ``set_if_empty``, ``add``, ``sum``); :func:`import_into` does it for a whole import
over a mutable mapping of host profiles, optionally creating the unknown ones.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from ..errors import NotFound, RecordError, SailthruError, TransientError
from ..results import BatchResult, ExportResult, Status
from ..shaping.mapping import InvalidValue
from ..transport.api import Download, SailthruApi

__all__ = [
    "IGNORED_COLUMNS",
    "KEY_COLUMNS",
    "ExportExpired",
    "ImportFailed",
    "ImportMode",
    "ImportTimeout",
    "ImportedUser",
    "ListImporter",
    "PollPolicy",
    "Rule",
    "apply_import",
    "import_into",
    "iter_import_into",
]

_log = logging.getLogger(__name__)

KEY_COLUMNS: Mapping[str, str] = {
    "profile id": "sid",
    "sid": "sid",
    "email": "email",
    "extid": "extid",
}
"""CSV columns (lower-cased) that give an :class:`ImportedUser` field instead of a var."""

IGNORED_COLUMNS: frozenset[str] = frozenset({"email hash"})
"""CSV columns (lower-cased) that are Sailthru's own, not vars: dropped."""

# Statuses of a download that mean the export file is gone: S3-style signed URLs answer 403
# once expired, Sailthru's own links 404 (or 410).
_EXPIRED_STATUSES = frozenset({403, 404, 410})
_RECORD_FIELDS = frozenset({"sid", "email", "extid", "lists", "source_list"})
_INTEGER = re.compile(r"[+-]?\d+")


# -- records, policies, errors --------------------------------------------------------------


@dataclass(frozen=True)
class ImportedUser:
    """One member of an imported list.

    ``vars`` holds the non-empty var cells as text. ``lists`` are the imported lists the user
    was found on: just ``(source_list,)`` per record, or all of them (in the order asked) when
    merged. ``source_list`` is the list this record came from (the first one when merged).
    """

    sid: str | None
    email: str | None
    extid: str | None
    vars: dict[str, str] = field(default_factory=dict, hash=False)
    lists: tuple[str, ...] = ()
    source_list: str = ""


@dataclass(frozen=True)
class PollPolicy:
    """How to wait for an export job: intervals grow by ``backoff`` up to ``max_interval``.

    A job not done ``timeout`` seconds after it was started fails with :class:`ImportTimeout`.
    Large lists take minutes on Sailthru's side, hence the generous defaults.
    """

    initial_interval: float = 2.0
    max_interval: float = 60.0
    backoff: float = 1.5
    timeout: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("initial_interval", "max_interval", "timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.backoff < 1:
            raise ValueError(f"backoff must be >= 1, got {self.backoff!r}")


class ImportFailed(SailthruError):
    """The import of one list failed: its job ended in error, or the export could not be read.

    ``list_name`` names the list, ``job_id`` the job (when one was started).
    """

    def __init__(
        self, message: str, *, list_name: str, job_id: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.list_name = list_name
        self.job_id = job_id

    def __str__(self) -> str:
        job = f" (job {self.job_id})" if self.job_id else ""
        hint = " It may succeed if retried." if self.retryable else ""
        text = self.message.rstrip(". ") or "no detail"
        return f"Import of list {self.list_name!r}{job} failed: {text}.{hint}"


class ImportTimeout(ImportFailed):
    """The export job was still not done when :attr:`PollPolicy.timeout` ran out."""

    default_retryable = True


class ExportExpired(ImportFailed):
    """The export file expired before it could be downloaded, even after one restart."""

    default_retryable = True


# -- the importer ---------------------------------------------------------------------------


class ListImporter:
    """Imports the members of Sailthru lists (smart lists too) through ``export_list_data``.

    ``clock`` measures the poll timeout; waits go through ``api.wait`` (its injected sleep).
    ``ignore_columns`` names more CSV columns to drop (besides :data:`IGNORED_COLUMNS`).
    """

    def __init__(
        self,
        api: SailthruApi,
        *,
        clock: Callable[[], float] = time.monotonic,
        ignore_columns: Collection[str] = (),
    ) -> None:
        self._api = api
        self._clock = clock
        self._ignored = IGNORED_COLUMNS | {name.strip().lower() for name in ignore_columns}

    def members(
        self,
        lists: str | Iterable[str],
        *,
        fields: Collection[str] | None = None,
        poll: PollPolicy | None = None,
        merge: bool = False,
    ) -> Iterator[ImportedUser]:
        """The members of ``lists``, streamed list after list (jobs start as it is iterated).

        A user on several lists comes once per list (``source_list`` says which), or once in
        all when ``merge`` is set, with every list it is on in ``lists``. Merging holds one
        record per unique user in memory until the last list is read, and yields nothing
        before; without it memory stays flat whatever the list sizes. ``fields`` keeps only
        these vars (``None``: all). Raises :class:`ImportFailed` (naming the list) when a job
        errors, times out or its export expires twice, and :class:`SailthruError` when a call
        fails (e.g. :class:`~sailthru_destination.errors.NotFound` for an unknown list).
        """
        names = _list_names(lists)
        policy = poll or PollPolicy()
        wanted = frozenset(fields) if fields is not None else None
        if merge:
            return self._merged(names, policy, wanted)
        return (user for name in names for user in self._list_members(name, policy, wanted))

    def _merged(
        self, names: list[str], poll: PollPolicy, wanted: frozenset[str] | None
    ) -> Iterator[ImportedUser]:
        merged: dict[str, ImportedUser] = {}
        for name in names:
            for user in self._list_members(name, poll, wanted):
                key = _identity(user)
                seen = merged.get(key)
                merged[key] = user if seen is None else _merge(seen, user)
        yield from merged.values()

    # -- one list --------------------------------------------------------------------------

    def _list_members(
        self, name: str, poll: PollPolicy, wanted: frozenset[str] | None
    ) -> Iterator[ImportedUser]:
        job_id, download = self._open_export(name, poll)
        count = 0
        with download as text:
            try:
                for user in self._parse(text, name, wanted):
                    count += 1
                    yield user
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ImportFailed(
                    f"the export is not readable CSV (after {count} members): {exc}",
                    list_name=name,
                    job_id=job_id,
                    endpoint="export",
                    method="GET",
                ) from None
            except TransientError as exc:
                # The members already yielded stay yielded: a rerun sees them again.
                raise ImportFailed(
                    f"the download broke off after {count} members ({type(exc).__name__})",
                    list_name=name,
                    job_id=job_id,
                    endpoint="export",
                    method="GET",
                    retryable=True,
                ) from None
        _log.info("list %r: %d members imported (job %s)", name, count, job_id)

    def _open_export(self, name: str, poll: PollPolicy) -> tuple[str, Download]:
        """Run an export job for ``name`` and open its file; restart it once if it expired.

        The export expired when the finished job says ``expired`` (Sailthru removes the file
        about two hours after the job ends) or when the download answers 403/404/410.
        """
        why = ""
        for attempt in (1, 2):
            job_id, url = self._run_export(name, poll)
            if url is None:
                why = "the finished job reports its export expired"
            else:
                try:
                    return job_id, self._api.download(url)
                except NotFound as gone:
                    why = f"HTTP {gone.status} from the export link"
                except SailthruError as failed:
                    raise ImportFailed(
                        failed.message,
                        list_name=name,
                        job_id=job_id,
                        endpoint="export",
                        method="GET",
                        status=failed.status,
                        retryable=failed.retryable,
                    ) from None
            if attempt == 1:
                _log.warning(
                    "list %r: export of job %s expired (%s); restarting the job", name, job_id, why
                )
        raise ExportExpired(
            f"the export expired again after a restart ({why})",
            list_name=name,
            job_id=job_id,
            endpoint="job",
            method="GET",
        )

    def _run_export(self, name: str, poll: PollPolicy) -> tuple[str, str | None]:
        """Start an export of ``name``, wait for it: (job id, export URL or None if expired)."""
        started = self._clock()
        reply = self._api.post("job", {"job": "export_list_data", "list": name})
        job_id = str(reply.get("job_id") or "")
        if not job_id:
            raise ImportFailed(
                "Sailthru started no job (its reply has no job_id)",
                list_name=name,
                endpoint="job",
                method="POST",
            )
        _log.info("list %r: export job %s started", name, job_id)
        return job_id, self._wait_for(name, job_id, reply, started, poll)

    def _wait_for(
        self,
        name: str,
        job_id: str,
        reply: Mapping[str, Any],
        started: float,
        poll: PollPolicy,
    ) -> str | None:
        """Poll until the job completes: its export URL, or None when the export expired."""
        interval = poll.initial_interval
        polls = 0
        while True:
            status = str(reply.get("status") or "")
            if status == "completed":
                url = reply.get("export_url")
                if reply.get("expired") or not url:
                    return None
                return str(url)
            if status == "error":
                raise ImportFailed(
                    f"Sailthru ended the export job in error: {_job_error_text(reply)}",
                    list_name=name,
                    job_id=job_id,
                    endpoint="job",
                    method="GET",
                )
            elapsed = self._clock() - started
            if elapsed >= poll.timeout:
                raise ImportTimeout(
                    f"the export job was still {status or 'pending'!r} after {elapsed:.0f} s "
                    f"and {polls} polls (PollPolicy.timeout is {poll.timeout:g} s)",
                    list_name=name,
                    job_id=job_id,
                    endpoint="job",
                    method="GET",
                )
            self._api.wait(min(interval, poll.timeout - elapsed))
            interval = min(interval * poll.backoff, poll.max_interval)
            reply = self._api.get("job", {"job_id": job_id})
            polls += 1

    def _parse(
        self, lines: Iterable[str], name: str, wanted: frozenset[str] | None
    ) -> Iterator[ImportedUser]:
        rows = csv.reader(lines)
        header = next(rows, None)
        if header is None:
            return
        columns = self._columns(header, wanted)
        source = (name,)
        for row in rows:
            if not row:
                continue
            keys: dict[str, str] = {}
            user_vars: dict[str, str] = {}
            for (kind, column), cell in zip(columns, row, strict=False):
                if not cell or kind == "":
                    continue
                if kind == "var":
                    user_vars[column] = cell
                else:
                    keys[kind] = cell
            yield ImportedUser(
                sid=keys.get("sid"),
                email=keys.get("email"),
                extid=keys.get("extid"),
                vars=user_vars,
                lists=source,
                source_list=name,
            )

    def _columns(self, header: list[str], wanted: frozenset[str] | None) -> list[tuple[str, str]]:
        """(what, name) per column: a record field, ``var`` or ``""`` (dropped)."""
        columns: list[tuple[str, str]] = []
        seen: set[str] = set()
        for raw in header:
            column = raw.strip()
            folded = column.lower()
            if folded in KEY_COLUMNS:
                kind = KEY_COLUMNS[folded]
            elif folded in self._ignored or column in seen:
                kind = ""
            elif wanted is None or column in wanted:
                kind = "var"
            else:
                kind = ""
            seen.add(column)
            columns.append((kind, column))
        return columns


def _list_names(lists: str | Iterable[str]) -> list[str]:
    names = [lists] if isinstance(lists, str) else list(lists)
    unique = list(dict.fromkeys(name for name in names))
    for name in unique:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"list names must be non-empty strings, got {name!r}")
    return unique


def _identity(user: ImportedUser) -> str:
    if user.sid:
        return "sid:" + user.sid
    if user.email:
        return "email:" + user.email.lower()
    return "extid:" + (user.extid or "")


def _merge(seen: ImportedUser, again: ImportedUser) -> ImportedUser:
    lists = seen.lists + tuple(name for name in again.lists if name not in seen.lists)
    return dataclasses.replace(
        seen,
        email=seen.email or again.email,
        extid=seen.extid or again.extid,
        vars={**seen.vars, **again.vars},
        lists=lists,
    )


def _job_error_text(reply: Mapping[str, Any]) -> str:
    for name in ("errormsg", "error_message", "message", "error", "status_message"):
        value = reply.get(name)
        if value:
            return str(value)
    return "it gave no reason"


# -- mapping into host profiles ------------------------------------------------------------


class ImportMode(str, Enum):
    """How an imported value combines with the host profile's current value."""

    SET = "set"
    """Replace the current value."""
    SET_IF_EMPTY = "set_if_empty"
    """Set only when the profile has no value (missing, None, "" or an empty collection)."""
    ADD = "add"
    """Add to a multi-value (a list), without duplicates; a scalar becomes a list."""
    SUM = "sum"
    """Add the imported number to the current one (missing counts as 0)."""

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Rule:
    """The mode for one imported field, and the host property it goes to (default: same name)."""

    mode: ImportMode
    to: str | None = None

    @classmethod
    def of(cls, rule: Rule | ImportMode | str) -> Rule:
        """A rule from a :class:`Rule`, an :class:`ImportMode` or a mode name like ``"sum"``."""
        if isinstance(rule, Rule):
            return rule
        try:
            return cls(ImportMode(rule))
        except ValueError:
            modes = ", ".join(mode.value for mode in ImportMode)
            raise ValueError(f"unknown import mode {rule!r}: use one of {modes}") from None


def apply_import(
    profile: Mapping[str, Any],
    user: ImportedUser,
    rules: Mapping[str, Rule | ImportMode | str],
    *,
    source_list_property: str | None = None,
) -> dict[str, Any]:
    """The host profile after importing ``user`` into it (``profile`` itself is not changed).

    ``rules`` maps an imported field to its rule: ``sid``, ``email``, ``extid``, ``lists`` and
    ``source_list`` are the record's own fields, any other name a var. Fields without a rule
    are not imported, and properties no rule targets are left as they are. A missing or empty
    imported value changes nothing (an import never erases host data). ``source_list_property``
    names a property that receives :attr:`ImportedUser.source_list`.

    Raises :class:`~sailthru_destination.shaping.mapping.InvalidValue` (naming the field) when
    ``sum``
    meets something that is not a number; nothing is applied then.
    """
    new = dict(profile)
    for name, given in rules.items():
        rule = Rule.of(given)
        value = _imported_value(user, name)
        if value is None or value == "" or value == []:
            continue
        target = rule.to or name
        new[target] = _combine(rule.mode, new.get(target), value, name, target)
    if source_list_property:
        new[source_list_property] = user.source_list
    return new


def iter_import_into(
    profiles: MutableMapping[str, dict[str, Any]],
    users: Iterable[ImportedUser],
    rules: Mapping[str, Rule | ImportMode | str],
    *,
    key: str = "email",
    create_unknown: bool = False,
    source_list_property: str | None = None,
) -> Iterator[ExportResult]:
    """Import ``users`` into ``profiles`` (host profiles by ``key``); one result per user.

    ``key`` is the :class:`ImportedUser` field the host profiles are keyed by (``email``,
    ``sid`` or ``extid``). A user whose profile is not there is ``skipped`` unless
    ``create_unknown``, which creates it from the rules alone (map ``email`` etc. to store the
    keys). A profile the import leaves as it was is ``skipped`` ("already up to date"); a
    record ``sum`` cannot apply is ``failed`` with the field named, and its profile untouched.
    Note that ``sum`` and ``add`` see a user once per list unless the import was merged.
    """
    if key not in ("email", "sid", "extid"):
        raise ValueError(f"key must be 'email', 'sid' or 'extid', got {key!r}")
    checked = {name: Rule.of(rule) for name, rule in rules.items()}
    for user in users:
        ident = getattr(user, key)
        if not ident:
            yield ExportResult(Status.SKIPPED, user.sid or "", f"the imported user has no {key}")
            continue
        current = profiles.get(ident)
        if current is None and not create_unknown:
            yield ExportResult(Status.SKIPPED, ident, "unknown user (create_unknown is off)")
            continue
        try:
            new = apply_import(
                current or {}, user, checked, source_list_property=source_list_property
            )
        except InvalidValue as exc:
            error = RecordError(record_id=ident, reason=str(exc), field=exc.field)
            yield ExportResult.failed(error)
            continue
        if current is None:
            profiles[ident] = new
            yield ExportResult(Status.CREATED, ident, f"created from list {user.source_list!r}")
        elif new == current:
            yield ExportResult(Status.SKIPPED, ident, "already up to date")
        else:
            profiles[ident] = new
            yield ExportResult(Status.UPDATED, ident, f"updated from list {user.source_list!r}")


def import_into(
    profiles: MutableMapping[str, dict[str, Any]],
    users: Iterable[ImportedUser],
    rules: Mapping[str, Rule | ImportMode | str],
    *,
    key: str = "email",
    create_unknown: bool = False,
    source_list_property: str | None = None,
) -> BatchResult:
    """:func:`iter_import_into` collected into a :class:`BatchResult` (one result per user)."""
    return BatchResult.of(
        iter_import_into(
            profiles,
            users,
            rules,
            key=key,
            create_unknown=create_unknown,
            source_list_property=source_list_property,
        )
    )


def _imported_value(user: ImportedUser, name: str) -> Any:
    if name in _RECORD_FIELDS:
        value = getattr(user, name)
        return list(value) if isinstance(value, tuple) else value
    return user.vars.get(name)


def _combine(mode: ImportMode, current: Any, value: Any, name: str, target: str) -> Any:
    if mode is ImportMode.SET:
        return value
    if mode is ImportMode.SET_IF_EMPTY:
        return value if _is_empty(current) else current
    if mode is ImportMode.ADD:
        values = [] if _is_empty(current) else _as_list(current)
        for item in _items(value):
            if item not in values:
                values.append(item)
        return values
    return _sum(current, value, name, target)


def _is_empty(value: Any) -> bool:
    if value is None or value == "":
        return True
    return isinstance(value, (list, tuple, set, frozenset, dict)) and not value


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


def _items(value: Any) -> list[Any]:
    """The values to add: a list's items; a JSON array in a CSV cell is read as one."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return [value]
        if isinstance(parsed, list):
            return parsed
    return [value]


def _sum(current: Any, value: Any, name: str, target: str) -> Any:
    added = _number(value)
    if added is None:
        raise InvalidValue(name, f"cannot sum {_shown(value)}: it is not a number")
    if _is_empty(current):
        return added
    base = _number(current) if not isinstance(current, str) else None
    if base is None:
        raise InvalidValue(
            target, f"cannot sum into the profile's {_shown(current)}: it is not a number"
        )
    if isinstance(base, Decimal) or isinstance(added, Decimal):
        return Decimal(str(base)) + Decimal(str(added))
    return base + added


def _number(value: Any) -> int | float | Decimal | None:
    """``value`` as a finite number (text as Sailthru wrote it is parsed), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return value if not isinstance(value, Decimal) or value.is_finite() else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
