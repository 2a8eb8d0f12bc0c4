"""List import through the job API against the fake Sailthru, and the mapping into host profiles."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers import KEY, SECRET, app_for, make_fake

from sailthru_destination.errors import NotFound
from sailthru_destination.features.imports import (
    ExportExpired,
    ImportedUser,
    ImportFailed,
    ImportMode,
    ImportTimeout,
    ListImporter,
    PollPolicy,
    Rule,
    apply_import,
    import_into,
)
from sailthru_destination.options import AppOptions
from sailthru_destination.results import Status
from sailthru_destination.shaping.mapping import InvalidValue
from sailthru_destination.testing import FakeSailthru
from sailthru_destination.transport.api import FileData, SailthruApi

NO_PACING = {"default": 1_000_000.0}


class Clock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    @property
    def polls(self) -> list[float]:
        """The waits between polls (the API's pacing waits are microseconds: left out)."""
        return [s for s in self.sleeps if s >= 0.01]


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeSailthru]:
    # The fake's jobs run on the test's clock: the importer's waits let them finish.
    with make_fake(seed=11, rate_limits={"default": 100_000}, clock=clock) as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(fake: FakeSailthru, clock: Clock) -> Iterator[SailthruApi]:
    with SailthruApi(
        app_for(fake), clock=clock, sleep=clock.sleep, rate_limits=NO_PACING
    ) as client:
        yield client


def seed(api: SailthruApi, users: Iterable[dict[str, Any]]) -> None:
    """Create users in one bulk ``update`` job (a JSON-lines file, as Sailthru takes it)."""
    body = "\n".join(json.dumps(user) for user in users).encode()
    job = api.post("job", {"job": "update"}, file=body)
    while api.get("job", {"job_id": job["job_id"]})["status"] == "pending":
        api.wait(0.1)  # the job runs asynchronously, as Sailthru's do


def member(email: str, *lists: str, **vars: Any) -> dict[str, Any]:
    return {"id": email, "key": "email", "vars": vars, "lists": {name: 1 for name in lists}}


def imported(email: str, source: str = "News", sid: str = "s1", **vars: str) -> ImportedUser:
    return ImportedUser(sid, email, None, dict(vars), (source,), source)


# -- import ---------------------------------------------------------------------------------


def test_an_empty_list_imports_no_members_after_one_job(
    fake: FakeSailthru, api: SailthruApi, clock: Clock
) -> None:
    api.post("list", {"list": "Empty"})
    assert list(ListImporter(api, clock=clock).members(["Empty"])) == []
    assert fake.calls[("POST", "job")] == 1
    assert fake.calls[("GET", "_export")] == 1


def test_a_one_member_list_yields_its_keys_vars_and_source(
    fake: FakeSailthru, api: SailthruApi, clock: Clock
) -> None:
    api.post(
        "user",
        {
            "id": "ann@example.com",
            "keys": {"extid": "E1"},
            "vars": {"age": 30, "tier": "gold", "tags": ["a", "b"]},
            "lists": {"News": 1},
        },
    )
    users = list(ListImporter(api, clock=clock).members("News"))
    found = fake.find_user(email="ann@example.com")
    assert found is not None
    assert users == [
        ImportedUser(
            sid=found["keys"]["sid"],
            email="ann@example.com",
            extid="E1",
            vars={"age": "30", "tier": "gold", "tags": '["a", "b"]'},
            lists=("News",),
            source_list="News",
        )
    ]
    # The job was polled once after the first wait, through the injected sleep.
    assert clock.polls == [PollPolicy().initial_interval]


def test_empty_cells_are_not_vars_and_quoted_newlines_survive_streaming(
    api: SailthruApi, clock: Clock
) -> None:
    seed(
        api,
        [
            member("a@example.com", "News", note='line one\nline two, with "quotes"'),
            member("b@example.com", "News", other="x"),
        ],
    )
    users = {u.email: u for u in ListImporter(api, clock=clock).members("News")}
    assert users["a@example.com"].vars == {"note": 'line one\nline two, with "quotes"'}
    assert users["b@example.com"].vars == {"other": "x"}


def test_fields_keeps_only_the_named_vars(api: SailthruApi, clock: Clock) -> None:
    seed(api, [member("a@example.com", "News", age=3, city="Oslo", tier="g")])
    (user,) = ListImporter(api, clock=clock).members("News", fields={"city", "tier"})
    assert user.vars == {"city": "Oslo", "tier": "g"}


def test_a_user_on_two_lists_comes_once_per_list_with_its_source(
    api: SailthruApi, clock: Clock
) -> None:
    seed(
        api,
        [
            member("both@example.com", "A", "B", n=1),
            member("a@example.com", "A"),
            member("b@example.com", "B"),
        ],
    )
    users = list(ListImporter(api, clock=clock).members(["A", "B"]))
    seen = sorted((u.email or "", u.source_list, u.lists) for u in users)
    assert seen == [
        ("a@example.com", "A", ("A",)),
        ("b@example.com", "B", ("B",)),
        ("both@example.com", "A", ("A",)),
        ("both@example.com", "B", ("B",)),
    ]


def test_merge_yields_each_user_once_with_all_its_lists(api: SailthruApi, clock: Clock) -> None:
    seed(
        api,
        [
            member("both@example.com", "A", "B", n=1),
            member("a@example.com", "A"),
            member("b@example.com", "B"),
        ],
    )
    users = list(ListImporter(api, clock=clock).members(["A", "B", "A"], merge=True))
    by_email = {u.email: u for u in users}
    assert len(users) == 3
    assert by_email["both@example.com"].lists == ("A", "B")
    assert by_email["both@example.com"].source_list == "A"
    assert by_email["both@example.com"].vars == {"n": "1"}
    assert by_email["b@example.com"].lists == ("B",)


def test_an_unknown_list_raises_sailthrus_not_found(api: SailthruApi, clock: Clock) -> None:
    with pytest.raises(NotFound, match="Unknown list: Nope"):
        list(ListImporter(api, clock=clock).members("Nope"))


def test_a_job_that_errors_fails_naming_the_list(
    fake: FakeSailthru, api: SailthruApi, clock: Clock
) -> None:
    api.post("list", {"list": "News"})
    fake.job_fails = True
    with pytest.raises(ImportFailed) as caught:
        list(ListImporter(api, clock=clock).members("News"))
    assert caught.value.list_name == "News"
    assert caught.value.job_id == fake.jobs[0]["job_id"]
    assert "Import of list 'News'" in str(caught.value)
    assert "ended the export job in error" in str(caught.value)
    assert not isinstance(caught.value, ImportTimeout)


def test_a_job_that_never_completes_times_out_after_backing_off(
    fake: FakeSailthru, api: SailthruApi, clock: Clock
) -> None:
    api.post("list", {"list": "News"})
    fake.job_polls = None
    policy = PollPolicy(initial_interval=1, max_interval=8, backoff=2, timeout=30)
    started = time.monotonic()
    with pytest.raises(ImportTimeout, match=r"Import of list 'News' .*still 'pending'") as caught:
        list(ListImporter(api, clock=clock).members("News", poll=policy))
    assert time.monotonic() - started < 2  # the waits were injected, not slept
    assert caught.value.retryable
    assert clock.polls == [1, 2, 4, 8, 8, 7]  # the last wait stops at the timeout
    assert fake.calls[("GET", "job")] == len(clock.polls)
    assert fake.calls[("GET", "_export")] == 0


def test_a_slow_job_is_waited_for(fake: FakeSailthru, api: SailthruApi, clock: Clock) -> None:
    seed(api, [member("a@example.com", "News")])
    clock.sleeps.clear()  # only the export's polls count
    fake.job_polls = 3
    policy = PollPolicy(initial_interval=1, max_interval=10, backoff=3, timeout=60)
    users = list(ListImporter(api, clock=clock).members("News", poll=policy))
    assert [u.email for u in users] == ["a@example.com"]
    assert clock.polls == [1, 3, 9]


class ExpiringApi(SailthruApi):
    """Expires the first ``times`` exports on the fake right after a GET /job shows them done."""

    def __init__(self, app: AppOptions, fake: FakeSailthru, times: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.fake = fake
        self.times = times

    def get(self, endpoint: str, payload: Any) -> dict[str, Any]:
        reply = super().get(endpoint, payload)
        if endpoint == "job" and reply.get("export_url") and self.times > 0:
            self.times -= 1
            self.fake.expire_export(reply["job_id"])
        return reply


class ExpiredOnArrivalApi(SailthruApi):
    """Expires the first ``times`` exports (done at creation) before GET /job is asked."""

    def __init__(self, app: AppOptions, fake: FakeSailthru, times: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.fake = fake
        self.times = times

    def post(self, endpoint: str, payload: Any, *, file: FileData | None = None) -> dict[str, Any]:
        reply = super().post(endpoint, payload, file=file)
        if endpoint == "job" and reply.get("export_url") and self.times > 0:
            self.times -= 1
            self.fake.expire_export(reply["job_id"])
            reply = super().get("job", {"job_id": reply["job_id"]})
            assert reply["expired"] is True
        return reply


def test_an_export_gone_at_download_restarts_the_job_once(fake: FakeSailthru, clock: Clock) -> None:
    with ExpiringApi(app_for(fake), fake, times=1, clock=clock, sleep=clock.sleep) as api:
        seed(api, [member("a@example.com", "News")])
        users = list(ListImporter(api, clock=clock).members("News"))
    assert [u.email for u in users] == ["a@example.com"]
    assert fake.calls[("POST", "job")] == 3  # the seed, the export, its restart
    assert fake.calls[("GET", "_export")] == 2


def test_an_export_reported_expired_by_the_job_restarts_it_once(
    fake: FakeSailthru, clock: Clock
) -> None:
    fake.job_polls = 0
    with ExpiredOnArrivalApi(app_for(fake), fake, times=1, clock=clock, sleep=clock.sleep) as api:
        seed(api, [member("a@example.com", "News")])
        users = list(ListImporter(api, clock=clock).members("News"))
    assert [u.email for u in users] == ["a@example.com"]
    assert fake.calls[("GET", "_export")] == 1  # the expired export was never fetched


@pytest.mark.parametrize("api_class", [ExpiringApi, ExpiredOnArrivalApi])
def test_an_export_that_expires_twice_fails_naming_the_list(
    fake: FakeSailthru, clock: Clock, api_class: type[ExpiringApi]
) -> None:
    if api_class is ExpiredOnArrivalApi:
        fake.job_polls = 0
    with api_class(app_for(fake), fake, times=2, clock=clock, sleep=clock.sleep) as api:
        seed(api, [member("a@example.com", "News")])
        with pytest.raises(ExportExpired, match=r"Import of list 'News' .*expired again") as caught:
            list(ListImporter(api, clock=clock).members("News"))
    assert caught.value.list_name == "News"
    assert [job["type"] for job in fake.jobs].count("export_list_data") == 2


class _TruncatedExport(BaseHTTPRequestHandler):
    """Promises more bytes than it sends, then hangs up: a download that breaks off."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"Profile Id,email\ns1,a@example.com\ns2,b@exa"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 1000))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RedirectingApi(SailthruApi):
    """Points the export URL of finished jobs at ``export_url``."""

    export_url = ""

    def get(self, endpoint: str, payload: Any) -> dict[str, Any]:
        reply = super().get(endpoint, payload)
        if endpoint == "job" and reply.get("export_url"):
            reply["export_url"] = self.export_url
        return reply


def test_a_download_that_breaks_off_fails_retryably_after_the_members_read(
    fake: FakeSailthru, clock: Clock
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TruncatedExport)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        with RedirectingApi(app_for(fake), clock=clock, sleep=clock.sleep) as api:
            api.export_url = f"http://127.0.0.1:{server.server_address[1]}/export.csv"
            api.post("list", {"list": "News"})
            members = ListImporter(api, clock=clock).members("News")
            assert next(members).email == "a@example.com"
            with pytest.raises(ImportFailed, match="broke off after 1 members") as caught:
                next(members)
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.retryable
    assert caught.value.list_name == "News"


def test_a_download_refused_by_the_server_fails_naming_the_list(
    fake: FakeSailthru, clock: Clock
) -> None:
    with RedirectingApi(app_for(fake), clock=clock, sleep=clock.sleep) as api:
        api.export_url = f"{fake.url}/job"  # 401 to an unsigned GET
        api.post("list", {"list": "News"})
        with pytest.raises(ImportFailed, match=r"Import of list 'News' .*download") as caught:
            list(ListImporter(api, clock=clock).members("News"))
    assert caught.value.status == 401
    assert not caught.value.retryable


def test_bad_list_names_are_refused_before_any_call(
    fake: FakeSailthru, api: SailthruApi, clock: Clock
) -> None:
    with pytest.raises(ValueError, match="non-empty strings"):
        ListImporter(api, clock=clock).members(["News", " "])
    assert sum(fake.calls.values()) == 0


_SERVER = textwrap.dedent(
    """
    import sys
    from sailthru_destination.testing import FakeSailthru
    with FakeSailthru(api_key=sys.argv[1], api_secret=sys.argv[2],
                      rate_limits={"default": 100000}, job_seconds=0) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()
    """
)


@pytest.fixture
def remote_fake() -> Iterator[str]:
    """A fake in another process, so that its own buffers do not count in our memory."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, KEY, SECRET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


@pytest.mark.slow
def test_fifty_thousand_members_stream_in_flat_memory(remote_fake: str, clock: Clock) -> None:
    count = 50_000
    app = AppOptions(api_key=KEY, api_secret=SECRET, api_url=remote_fake, read_timeout=30.0)
    with SailthruApi(app, clock=clock, sleep=clock.sleep) as api:
        # A list import job is the fastest way in (about 1 s for 50,000 in the fake); vars
        # parsing is covered above, and in bench/import_memory.py at this size.
        emails = ",".join(f"user{i}@example.com" for i in range(count))
        api.post("job", {"job": "import", "list": "Big", "emails": emails})
        del emails
        gc.collect()
        tracemalloc.start()
        try:
            seen = 0
            numbers = 0
            for user in ListImporter(api, clock=clock).members("Big"):
                seen += 1
                assert user.sid
                assert user.email
                numbers += int(user.email[4 : user.email.index("@")])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert seen == count
    assert numbers == count * (count - 1) // 2  # every member exactly once
    # Holding the records would take over 10 MB (bench/import_memory.py measured 38 MB for
    # merging 50,000 with three vars): streaming stays around the download and parse buffers
    # (measured 0.1 MB).
    assert peak < 1_000_000, f"peak {peak} bytes"


# -- mapping --------------------------------------------------------------------------------


def test_set_replaces_and_set_if_empty_only_fills() -> None:
    user = imported("a@example.com", first_name="Ann", city="Oslo", tier="gold")
    profile = {"first_name": "Old", "city": "", "tier": "silver", "untouched": 7}
    rules = {"first_name": "set", "city": "set_if_empty", "tier": ImportMode.SET_IF_EMPTY}
    new = apply_import(profile, user, rules)
    assert new == {"first_name": "Ann", "city": "Oslo", "tier": "silver", "untouched": 7}
    assert profile["first_name"] == "Old"  # the given profile is not changed


def test_add_keeps_a_multi_value_without_duplicates() -> None:
    user = imported("a@example.com", tag="vip", tags='["a", "b"]')
    rules: dict[str, Rule | str] = {"tag": "add", "tags": Rule(ImportMode.ADD, to="labels")}
    new = apply_import({"tag": ["new", "vip"], "labels": "a"}, user, rules)
    assert new["tag"] == ["new", "vip"]
    assert new["labels"] == ["a", "b"]
    assert apply_import({}, user, {"tag": "add"})["tag"] == ["vip"]


def test_sum_adds_numbers_and_starts_from_zero() -> None:
    user = imported("a@example.com", visits="3", spend="2.5")
    rules = {"visits": "sum", "spend": "sum"}
    assert apply_import({"visits": 4, "spend": 1}, user, rules) == {"visits": 7, "spend": 3.5}
    assert apply_import({}, user, rules) == {"visits": 3, "spend": 2.5}
    assert apply_import({"spend": Decimal("0.10")}, user, rules)["spend"] == Decimal("2.60")


def test_sum_of_a_non_number_is_an_error_naming_the_field() -> None:
    with pytest.raises(InvalidValue, match=r"'visits'.*not a number") as caught:
        apply_import({"visits": 1}, imported("a@example.com", visits="many"), {"visits": "sum"})
    assert caught.value.field == "visits"
    with pytest.raises(InvalidValue, match="'total'"):
        apply_import(
            {"total": "lots"},
            imported("a@example.com", visits="1"),
            {"visits": Rule(ImportMode.SUM, to="total")},
        )
    with pytest.raises(InvalidValue):
        apply_import({}, imported("a@example.com", visits="true"), {"visits": "sum"})


def test_fields_without_rules_and_empty_values_change_nothing() -> None:
    user = imported("a@example.com", city="Oslo")
    profile = {"city": "Bergen", "age": 4}
    assert apply_import(profile, user, {}) == profile
    assert apply_import(profile, user, {"age": "set", "missing": "sum"}) == profile


def test_record_fields_and_the_source_list_can_be_imported() -> None:
    user = imported("a@example.com", source="VIP", sid="abc")
    rules = {"email": "set", "sid": Rule(ImportMode.SET, to="sailthru_id"), "lists": "add"}
    new = apply_import({"lists": ["News"]}, user, rules, source_list_property="from_list")
    assert new == {
        "email": "a@example.com",
        "sailthru_id": "abc",
        "lists": ["News", "VIP"],
        "from_list": "VIP",
    }


def test_an_unknown_mode_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown import mode 'append'.*set_if_empty"):
        apply_import({}, imported("a@example.com", x="1"), {"x": "append"})


def test_import_into_creates_updates_skips_and_fails_per_record() -> None:
    profiles: dict[str, dict[str, Any]] = {
        "known@example.com": {"visits": 1},
        "same@example.com": {"visits": 1, "source": "News"},
        "bad@example.com": {"visits": 1},
    }
    users = [
        imported("known@example.com", visits="2"),
        imported("new@example.com", visits="5"),
        imported("same@example.com"),
        imported("bad@example.com", visits="n/a"),
        ImportedUser("s9", None, None, {}, ("News",), "News"),
    ]
    rules = {"visits": "sum"}
    skipped = import_into(dict(profiles), users, rules, source_list_property="source")
    assert [str(r.status) for r in skipped.results] == [
        "updated",
        "skipped",
        "skipped",
        "failed",
        "skipped",
    ]
    assert skipped.results[1].detail == "unknown user (create_unknown is off)"
    result = import_into(profiles, users, rules, create_unknown=True, source_list_property="source")
    assert [r.status for r in result.results] == [
        Status.UPDATED,
        Status.CREATED,
        Status.SKIPPED,
        Status.FAILED,
        Status.SKIPPED,
    ]
    assert profiles["known@example.com"] == {"visits": 3, "source": "News"}
    assert profiles["new@example.com"] == {"visits": 5, "source": "News"}
    assert profiles["bad@example.com"] == {"visits": 1}  # a failed record changes nothing
    (error,) = result.errors
    assert (error.record_id, error.field) == ("bad@example.com", "visits")
    assert result.results[4].detail == "the imported user has no email"


def test_a_merged_import_from_the_fake_sums_each_user_once(api: SailthruApi, clock: Clock) -> None:
    seed(
        api,
        [
            member("both@example.com", "A", "B", points=10),
            member("new@example.com", "B", points=1),
        ],
    )
    profiles: dict[str, dict[str, Any]] = {"both@example.com": {"points": 5}}
    users = ListImporter(api, clock=clock).members(["A", "B"], merge=True)
    result = import_into(
        profiles,
        users,
        {"points": "sum", "lists": Rule(ImportMode.ADD, to="groups")},
        create_unknown=True,
    )
    assert result.counts == {"updated": 1, "created": 1}
    assert profiles == {
        "both@example.com": {"points": 15, "groups": ["A", "B"]},
        "new@example.com": {"points": 1, "groups": ["B"]},
    }
