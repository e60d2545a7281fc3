"""Query results rendered for people (aligned table) and programs (JSON objects, CSV)."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

from fabricscope.results import to_csv, to_json, to_table
from pipeline.store import QueryResult
from pipeline.units import si_bytes

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


def test_every_clickhouse_value_becomes_json_without_loss() -> None:
    paris = timezone(timedelta(hours=1))
    result = QueryResult(
        columns=["uuid", "v4", "v6", "dec", "naive", "paris", "day", "raw", "nested", "map", "inf", "time"],
        types=["UUID", "IPv4", "IPv6", "Decimal(18, 4)", "DateTime", "DateTime('Europe/Paris')", "Date",
               "FixedString(4)", "Array(Tuple(UUID, Float64))", "Map(IPv4, Array(Decimal(9, 2)))", "Float64",
               "Time"],
        rows=[(UUID(int=1), ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv6Address("fd00::1"), Decimal("1.2500"),
               datetime(2026, 1, 15, 11, 0), datetime(2026, 1, 15, 12, 0, tzinfo=paris), date(2026, 1, 15),
               b"ab\x00\xff", [(UUID(int=2), float("-inf"))], {ipaddress.IPv4Address("1.2.3.4"): [Decimal("0.10")]},
               float("inf"), timedelta(hours=11))],
    )
    assert json.loads(to_json(result)) == [{
        "uuid": "00000000-0000-0000-0000-000000000001", "v4": "10.0.0.1", "v6": "fd00::1", "dec": "1.2500",
        "naive": "2026-01-15T11:00:00Z", "paris": "2026-01-15T12:00:00+01:00", "day": "2026-01-15",
        "raw": "ab\x00\\xff", "nested": [["00000000-0000-0000-0000-000000000002", None]],
        "map": {"1.2.3.4": ["0.10"]}, "inf": None, "time": "11:00:00",
    }]
    assert "00000000-0000-0000-0000-000000000001" in to_table(result)


def test_a_result_without_column_names_keeps_its_values() -> None:
    """KILL QUERY ... SYNC answers rows and no names (it is refused as a query now, but rendering holds)."""
    result = QueryResult([], [], [("finished", UUID(int=3))])
    assert json.loads(to_json(result)) == [{"_1": "finished", "_2": "00000000-0000-0000-0000-000000000003"}]
    assert to_table(result).splitlines()[0].split() == ["_1", "_2"]


def test_csv_is_complete_and_parses_back() -> None:
    result = QueryResult(
        columns=["ts", "summary", "nested", "value"], types=["DateTime64(6, 'UTC')", "String", "Array(String)",
                                                              "Nullable(Float64)"],
        rows=[(datetime(2026, 1, 15, 11, 0, 0, 250001, tzinfo=UTC), 'a, "quoted"\nline', ["x", "y"], None)],
    )
    assert list(csv.reader(io.StringIO(to_csv(result)))) == [
        ["ts", "summary", "nested", "value"],
        ["2026-01-15T11:00:00.250001Z", 'a, "quoted"\nline', '["x", "y"]', ""],
    ]
    assert to_csv(QueryResult(["n"], ["UInt8"], [])) == "n"


def test_the_table_shows_times_to_the_ms_bytes_in_si_units_and_protocols_by_name() -> None:
    result = QueryResult(
        columns=["ts_start", "proto", "bytes", "rx_bytes", "packets"],
        types=["DateTime64(6, 'UTC')", "UInt8", "UInt64", "UInt64", "UInt64"],
        rows=[(datetime(2026, 1, 15, 11, 0, 0, 999999), 17, 30920640, 999, 30920640),
              (datetime(2026, 1, 15, 11, 0, 1, tzinfo=UTC), 254, 1000, 0, 1)],
    )
    lines = to_table(result).splitlines()
    assert lines[2].split() == ["2026-01-15T11:00:00.999Z", "udp", "30.9", "MB", "999", "B", "30920640"]
    assert lines[3].split() == ["2026-01-15T11:00:01.000Z", "254", "1.00", "kB", "0", "B", "1"]


def test_si_bytes_keeps_three_significant_digits() -> None:
    assert [si_bytes(n) for n in (0, 999, 1000, 12_345, 999_960, 1_234_567_890_123)] == [
        "0 B", "999 B", "1.00 kB", "12.3 kB", "1.00 MB", "1.23 TB"]
