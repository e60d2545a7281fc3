"""Query results rendered for people (aligned table) and programs (JSON objects)."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime

from fabricscope.results import to_json, to_table
from pipeline.store import QueryResult

RESULT = QueryResult(
    columns=["ts", "link", "src_ip", "value"],
    types=["DateTime64(6, 'UTC')", "String", "IPv6", "Nullable(Float64)"],
    rows=[(datetime(2026, 1, 15, 11, 0, 0, 250000, tzinfo=UTC), "leaf1-spine1",
           ipaddress.IPv6Address("::ffff:10.0.1.5"), None),
          (datetime(2026, 1, 15, 11, 0, 1, tzinfo=UTC), "leaf2-spine2", ipaddress.IPv6Address("fd00::1"),
           float("nan"))],
)


def test_json_objects_use_iso_times_and_plain_addresses() -> None:
    assert json.loads(to_json(RESULT)) == [
        {"ts": "2026-01-15T11:00:00.250000Z", "link": "leaf1-spine1", "src_ip": "10.0.1.5", "value": None},
        {"ts": "2026-01-15T11:00:01Z", "link": "leaf2-spine2", "src_ip": "fd00::1", "value": None},
    ]


def test_table_columns_are_aligned() -> None:
    lines = to_table(RESULT).splitlines()
    assert lines[0].split() == RESULT.columns
    assert lines[2].index("leaf1-spine1") == lines[3].index("leaf2-spine2") == lines[0].index("link")


def test_an_empty_result_says_so() -> None:
    assert to_table(QueryResult([], [], [])) == "(no rows)"
    assert to_json(QueryResult([], [], [])) == "[]"
