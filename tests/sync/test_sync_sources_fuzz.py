"""The sources against arbitrary bytes and round trips, at a CI budget (see
``source_properties.py``; ``bench/fuzz_sources.py`` runs the same properties longer)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from source_properties import arbitrary_bytes, csv_round_trip, jsonl_round_trip

CI = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

test_arbitrary_bytes_never_escape_and_every_row_is_named_by_its_line = arbitrary_bytes(CI)
test_rows_written_by_csv_writer_read_back_unchanged = csv_round_trip(CI)
test_objects_written_by_json_dumps_read_back_unchanged = jsonl_round_trip(CI)
