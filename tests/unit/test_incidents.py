"""`fabricscope events` output: the table fits 120 columns with one line per incident and summarises the
details; JSON carries details as an object; CSV carries every column, details as JSON text."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from fabricscope.commands.events import COLUMNS
from fabricscope.incidents import TERMINAL_WIDTH, details_counts, short_summary, to_json, to_lines
from fabricscope.results import to_csv
from pipeline.store import QueryResult

TOP_FLOWS = [{"flow": f"10.0.3.{i}:49170 > 10.0.4.{i}:4791 udp qp {i}", "job": "llama-70b", "bytes": 598464,
              "ecn_ce": 37} for i in range(5)]
CONGESTION = {
    "ts": datetime(2026, 1, 15, 13, 0, 0, 77273, tzinfo=UTC), "ts_end": datetime(2026, 1, 15, 13, 0, 0, 176215),
    "kind": "congestion", "severity": "warning", "link": "leaf4-spine2", "direction": "down", "device": "",
    "job": "llama-70b,vit-h",
    "summary": "congestion on leaf4-spine2 down: peak CE ratio 53.2%, 100 CE over 2 bursts, 94 CNP, 160 PFC pauses, "
               "jobs llama-70b, vit-h",
    "convergence_ms": None, "local_convergence_ms": None, "remote_convergence_ms": None, "flows_affected": 0,
    "flows_recovered": 0, "packets_lost": 0, "value": 0.532,
    "details": json.dumps({"ce": 100, "marks_per_burst": [20, 80], "jobs": ["llama-70b", "vit-h"],
                           "top_flows": TOP_FLOWS}),
    "event_id": "04035edcd08614f7", "state": "open", "updated": datetime(2026, 1, 15, 13, 0, 1, tzinfo=UTC),
}
FLAP = {**CONGESTION, "kind": "link_flap", "link": "leaf2-spine2", "direction": "unknown", "job": "",
        "summary": "leaf2-spine2 flapped: down 30.2 ms", "details": "{}", "state": "closed"}


def result(*incidents: dict[str, object]) -> QueryResult:
    return QueryResult(list(COLUMNS), ["String"] * len(COLUMNS),
                       [tuple(incident[column] for column in COLUMNS) for incident in incidents])


def test_the_table_is_one_line_per_incident_within_a_terminal() -> None:
    lines = to_lines(result(CONGESTION, FLAP)).splitlines()
    assert len(lines) == 3 and all(len(line) <= TERMINAL_WIDTH for line in lines)
    assert lines[0].split() == ["time", "kind", "link", "state", "summary"]
    assert lines[1].startswith("2026-01-15T13:00:00.077Z  congestion  leaf4-spine2 down  open    peak CE ratio")
    assert lines[1].endswith(" | jobs: llama-70b,vit-h")  # the jobs kept when the summary must be cut
    assert "{" not in lines[1]
    assert lines[2].split()[1:] == ["link_flap", "leaf2-spine2", "closed", "down", "30.2", "ms"]


def test_a_wider_line_also_gives_the_counts_of_the_details() -> None:
    line = to_lines(result(CONGESTION), width=200).splitlines()[1]
    assert line.endswith("peak CE ratio 53.2%, 100 CE over 2 bursts, 94 CNP, 160 PFC pauses"
                         " | jobs: llama-70b,vit-h; top flows: 5")


def test_summary_and_details_are_told_short() -> None:
    assert short_summary("leaf1 uplinks unevenly loaded: leaf1-spine1 71%", "leaf1 up", "") == "leaf1-spine1 71%"
    assert short_summary("job a slowed: 2x", "leaf1-spine1 up", "a") == "job a slowed: 2x"
    assert details_counts({"flows": [{"a": 1}] * 3, "marks": [1, 2], "links": [], "n": 4}) == ["flows: 3"]
    assert details_counts("not json") == []
    assert to_lines(result()) == "(no incidents)"


def test_json_gives_details_as_an_object_and_times_with_z() -> None:
    [incident] = json.loads(to_json(result(CONGESTION)))
    assert incident["details"]["top_flows"] == TOP_FLOWS
    assert (incident["ts"], incident["ts_end"]) == ("2026-01-15T13:00:00.077273Z", "2026-01-15T13:00:00.176215Z")
    assert set(incident) == set(COLUMNS)


def test_csv_has_every_column_and_the_same_rows_as_json() -> None:
    both = result(CONGESTION, FLAP)
    rows = list(csv.DictReader(io.StringIO(to_csv(both))))
    incidents = json.loads(to_json(both))
    assert [json.loads(row["details"]) for row in rows] == [incident["details"] for incident in incidents]
    assert [(row["ts"], row["summary"], row["job"]) for row in rows] == [
        (incident["ts"], incident["summary"], incident["job"]) for incident in incidents]
