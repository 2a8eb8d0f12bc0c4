"""The installed ``target-sailthru`` executable, fed Singer message files, against the fake."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SECRET, kill_when, make_fake

from sailthru_destination.integrations.singer import TargetSailthru
from sailthru_destination.sync.config import ConfigError
from sailthru_destination.testing import FakeSailthru

TARGET = Path(sys.executable).parent / "target-sailthru"

USERS_SCHEMA = {"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {
    "properties": {"id": {"type": "integer"}, "email": {"type": "string"},
                   "plan": {"type": ["string", "null"]}}}}
CLICKS_SCHEMA = {"type": "SCHEMA", "stream": "clicks", "key_properties": ["id"], "schema": {
    "properties": {"id": {"type": "string"}, "email": {"type": "string"},
                   "event": {"type": "string"}, "n": {"type": "integer"}}}}


def _user(n: int, **changes: Any) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "users",
            "record": {"id": n, "email": f"u{n}@example.com", "plan": "free", **changes}}


def _click(n: int) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "clicks",
            "record": {"id": f"c{n}", "email": "e@example.com", "event": "clicked", "n": n}}


def _state(**bookmarks: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"bookmarks": bookmarks}}


def _write(path: Path, messages: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def _config(home: Path, fake: FakeSailthru, **extra: Any) -> Path:
    config = {"api_key": KEY, "api_secret": SECRET, "api_url": fake.url,
              "state_dir": str(home / "state"), "streams": {"clicks": {"object": "events"}},
              **extra}
    path = home / "config.json"
    path.write_text(json.dumps(config))
    return path


def _run(config: Path, messages: Path) -> subprocess.CompletedProcess[str]:
    with messages.open() as stdin:
        return subprocess.run([str(TARGET), "--config", str(config)], stdin=stdin,
                              capture_output=True, text=True, timeout=120, check=False)


def _errors(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted((home / "state" / "reports").glob("*/errors.jsonl"))
            for line in path.read_text().splitlines()]


def _states(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_bad_records_are_reported_state_is_emitted_and_a_rerun_costs_nothing(
    fake: FakeSailthru, host_home: Path
) -> None:
    messages = _write(host_home / "in.singer", [
        USERS_SCHEMA, _user(1), _user(2), _user(3, email="not-an-email"),
        {"type": "RECORD", "stream": "users", "record": {"id": "four", "email": "x@example.com"}},
        _state(users=4), CLICKS_SCHEMA, _click(1), _click(2), _state(users=4, clicks=2),
    ])
    config = _config(host_home, fake)
    first = _run(config, messages)
    assert first.returncode == 0, first.stderr
    assert _states(first.stdout)[-1] == {"bookmarks": {"users": 4, "clicks": 2}}
    assert fake.find_user(email="u1@example.com")["vars"] == {"plan": "free"}
    assert fake.find_user(email="u2@example.com") is not None
    assert len(fake.events) == 2
    errors = {e["record"]: e for e in _errors(host_home)}
    assert set(errors) == {"3", "four"}
    assert errors["3"]["field"] == "email"  # the model's column, not the destination's "key"
    assert "'id' does not fit the stream's schema" in errors["four"]["reason"]
    assert "2 failed" in first.stderr  # the summary in the target's log
    assert SECRET not in first.stdout + first.stderr
    for path in (host_home / "state").rglob("*"):  # state, reports, call log
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path

    before = fake.calls.copy()
    again = _run(config, messages)  # the tap sends the same records again
    assert again.returncode == 0, again.stderr
    assert fake.calls - before == {}
    assert _states(again.stdout)[-1] == {"bookmarks": {"users": 4, "clicks": 2}}


def test_a_purchases_stream_without_key_properties_is_keyed_by_its_order_id(
    fake: FakeSailthru, host_home: Path
) -> None:
    """Red team (dlt's defect, checked here too): a purchases stream with ``order_id`` and no
    ``id`` is keyed by its order column, as the CLI keys a purchases model."""
    item = {"id": "sku", "title": "Mug", "qty": 1, "price": 9.99, "url": "https://ex.com/m"}
    schema = {"type": "SCHEMA", "stream": "orders", "key_properties": [], "schema": {
        "properties": {"order_id": {"type": "string"}, "email": {"type": "string"},
                       "items": {"type": "array"}}}}
    messages = _write(host_home / "in.singer", [schema, *(
        {"type": "RECORD", "stream": "orders",
         "record": {"order_id": f"o-{n}", "email": f"k{n}@example.com", "items": [item]}}
        for n in range(3))])
    config = _config(host_home, fake, streams={"orders": {"object": "purchases"}})
    for _ in range(2):  # sent once: the same orders again are known
        result = _run(config, messages)
        assert result.returncode == 0, result.stderr
    assert _errors(host_home) == []
    assert sorted(p["purchase_keys"]["extid"] for p in fake.purchases) == ["o-0", "o-1", "o-2"]


def test_refused_credentials_stop_the_target_before_any_state(
    fake: FakeSailthru, host_home: Path
) -> None:
    config = _config(host_home, fake, api_secret="wrong-secret")
    done = _run(config, _write(host_home / "in.singer", [USERS_SCHEMA, _user(1), _state(users=1)]))
    assert done.returncode != 0
    assert "refused the API key or secret" in done.stderr
    assert done.stdout.strip() == ""  # no STATE for records that were not applied
    assert "wrong-secret" not in done.stderr


def test_a_crash_in_the_middle_loses_and_doubles_nothing(
    host_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clicks = 40
    messages: list[dict[str, Any]] = [USERS_SCHEMA, CLICKS_SCHEMA]
    for n in range(clicks):
        messages += [_user(n), _click(n)]
        if n % 10 == 9:
            messages.append(_state(users=n + 1, clicks=n + 1))
    with make_fake(rate_limits={"default": 100_000}, latency=0.03) as slow:
        config = _config(host_home, slow, batch_size_rows=10)
        feed = _write(host_home / "in.singer", messages)
        with feed.open() as stdin:
            child = subprocess.Popen([str(TARGET), "--config", str(config)], stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
            kill_when(child, lambda: len(slow.events) >= 12)
            printed, _ = child.communicate(timeout=10)
        assert 12 <= len(slow.events) < clicks, "the crash came in the middle"
        # Any STATE the killed target wrote covers only records that were applied.
        for state in _states(printed):
            done = state["bookmarks"]["clicks"]
            assert {e["vars"]["n"] for e in slow.events} >= set(range(done))

        # The tap sends everything again from its last state (none reached it).
        rerun = _run(config, feed)
        assert rerun.returncode == 0, rerun.stderr
        assert _states(rerun.stdout)[-1] == {"bookmarks": {"users": clicks, "clicks": clicks}}
        sent = sorted(e["vars"]["n"] for e in slow.events)
        assert len(sent) == len(set(sent)), f"an event was posted twice: {sent}"
        # At most once: an event in flight at the crash is reported for reconciliation.
        unsure = {int(e["record"][1:]) for e in _errors(host_home) if "'pending'" in e["reason"]}
        assert set(sent) | unsure == set(range(clicks)), (sent, unsure)
        for n in range(clicks):
            assert slow.find_user(email=f"u{n}@example.com")["vars"] == {"plan": "free"}


def _listen(config: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """Run the target in this process (for the cases that need no executable)."""
    feed = io.StringIO("".join(json.dumps(m) + "\n" for m in messages))
    with contextlib.redirect_stdout(io.StringIO()):
        TargetSailthru(config=config).listen(file_input=feed)


def test_record_metadata_and_dates_do_not_make_a_record_look_changed(
    fake: FakeSailthru, host_home: Path
) -> None:
    schema = {**USERS_SCHEMA, "schema": {"properties": {
        **USERS_SCHEMA["schema"]["properties"],
        "since": {"type": "string", "format": "date-time"}}}}
    record = _user(1, since="2024-01-02T03:04:05+00:00")
    config = {**json.loads(_config(host_home, fake).read_text()), "add_record_metadata": True}
    _listen(config, [schema, record])
    # The SDK parsed the date-time into a datetime: it is sent as ISO 8601 again, and the
    # _sdc_* metadata (a new received-at on every run) is not a var.
    assert fake.find_user(email="u1@example.com")["vars"] == {
        "plan": "free", "since": "2024-01-02T03:04:05+00:00"}
    before = fake.calls.copy()
    _listen(config, [schema, record])
    assert fake.calls - before == {}


def test_a_marked_record_gets_the_delete_behaviour(fake: FakeSailthru, host_home: Path) -> None:
    config = {**json.loads(_config(host_home, fake).read_text()),
              "mapping": {"delete_behavior": "delete"}}
    schema = {**USERS_SCHEMA, "schema": {"properties": {
        **USERS_SCHEMA["schema"]["properties"], "_deleted": {"type": ["boolean", "null"]}}}}
    _listen(config, [schema, _user(1), _user(2)])
    _listen(config, [schema, _user(1, _deleted=True)])
    assert fake.find_user(email="u1@example.com") is None
    assert fake.find_user(email="u2@example.com") is not None


def test_a_wrong_setting_stops_the_target_naming_it(fake: FakeSailthru, host_home: Path) -> None:
    config = {**json.loads(_config(host_home, fake).read_text()),
              "streams": {"users": {"delete_behaviour": "delete"}}}
    with pytest.raises(ConfigError, match="delete_behaviour"):
        _listen(config, [USERS_SCHEMA, _user(1)])
    assert fake.calls == {}


def test_the_credentials_are_marked_secret_in_the_config_schema() -> None:
    about = subprocess.run([str(TARGET), "--about", "--format", "json"], capture_output=True,
                           text=True, timeout=60, check=True)
    settings = json.loads(about.stdout)["settings"]["properties"]
    assert settings["api_key"]["secret"] is True
    assert settings["api_secret"]["secret"] is True
    assert not settings["api_url"].get("secret")


def test_the_core_never_imports_a_host_framework() -> None:
    probe = ("import sys, sailthru_destination, sailthru_destination.sync, "
             "sailthru_destination.integrations, sailthru_destination.cli; "
             "print(sorted(m for m in ('dlt', 'singer_sdk') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_sdc_deleted_at_as_the_deleted_column_asks_for_add_record_metadata(
    fake: FakeSailthru, host_home: Path
) -> None:
    # Red team (rt-promises, D): the SDK strips _sdc_* fields unless add_record_metadata is
    # on; the target stopped with a traceback naming no such column. Now: exit 2 saying which
    # setting to add, and with it a tap's delete record deletes.
    schema = {**USERS_SCHEMA, "schema": {"properties": {
        **USERS_SCHEMA["schema"]["properties"],
        "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"}}}}
    mapping = {"delete_behavior": "delete", "deleted_column": "_sdc_deleted_at"}
    config = _config(host_home, fake, mapping=mapping)
    first = _run(config, _write(host_home / "m.jsonl", [schema, _user(1)]))
    assert first.returncode == 2, first.stderr
    assert "Traceback" not in first.stderr
    assert "add_record_metadata: true" in first.stderr
    assert fake.calls == {}
    config = _config(host_home, fake, mapping=mapping, add_record_metadata=True)
    assert _run(config, _write(host_home / "m.jsonl", [schema, _user(1), _user(2)])).returncode == 0
    gone = _user(1, _sdc_deleted_at="2026-12-07T00:00:00Z")
    assert _run(config, _write(host_home / "m.jsonl", [schema, gone])).returncode == 0
    assert fake.find_user(email="u1@example.com") is None
    assert fake.find_user(email="u2@example.com") is not None
