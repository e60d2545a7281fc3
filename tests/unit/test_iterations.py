"""Iteration builder on hand-built labelled rows: grouping across flows and links, completeness, numbering
and periods, rows that are not a job's data left out, iterations cut off by the window skipped."""

from __future__ import annotations

import numpy as np
import pytest

from collectors.dfi import FlowClasses
from collectors.iterations import IterationBuilder, IterationConfig
from pipeline.labels import TRAFFIC_CLASS_CODE
from pipeline.records import column_names

T0 = 1_768_471_200_000_000  # µs
MS = 1000
ALL = np.iinfo(np.int64).max
NONE = np.iinfo(np.int64).min


def rows(spec: list[tuple[int, int, str, int, str, str]]) -> tuple[dict[str, np.ndarray], FlowClasses]:
    """Rows from (start ms, end ms, link, flow, job, kind) with kind 'data' or 'ack'."""
    start = np.array([T0 + s * MS for s, *_ in spec], dtype=np.int64).astype("datetime64[us]")
    end = np.array([T0 + e * MS for _, e, *_ in spec], dtype=np.int64).astype("datetime64[us]")
    data = np.array([kind == "data" for *_, kind in spec])
    columns = {
        "ts_start": start, "ts_end": end, "link": np.array([r[2] for r in spec], dtype=object),
        "packets": np.full(len(spec), 10, dtype=np.uint64), "bytes": np.full(len(spec), 10_000, dtype=np.uint64),
        "roce_write": np.where(data, 10, 0).astype(np.uint64), "roce_read": np.zeros(len(spec), dtype=np.uint64),
        "roce_send": np.zeros(len(spec), dtype=np.uint64),
    }
    jobs = np.array([r[4] for r in spec], dtype=object)
    classes = np.where(jobs != "", TRAFFIC_CLASS_CODE["collective"], TRAFFIC_CLASS_CODE["p2p"]).astype(np.uint8)
    return columns, FlowClasses(classes, jobs, np.array([r[3] for r in spec], dtype=np.int64))


def test_overlapping_bursts_of_a_job_are_one_iteration_and_numbered_with_periods() -> None:
    columns, classes = rows([
        (0, 10, "leaf1-spine1", 0, "job-a", "data"), (1, 12, "leaf2-spine1", 0, "job-a", "data"),
        (13, 15, "leaf1-spine2", 1, "job-a", "data"),  # within the gap of the others
        (0, 40, "leaf1-spine1", 2, "job-a", "ack"), (20, 25, "leaf3-spine1", 3, "", "data"),
        (50, 61, "leaf1-spine1", 0, "job-a", "data"), (100, 109, "leaf1-spine1", 0, "job-a", "data"),
    ])
    result = IterationBuilder(exporter="c1").update(columns, classes, ALL, NONE)
    assert list(result) == column_names("iterations")
    assert result["iteration"].tolist() == [0, 1, 2]
    assert result["allreduce_ms"].tolist() == [15.0, 11.0, 9.0]
    assert result["period_ms"].tolist() == [0.0, 50.0, 50.0]
    assert result["ts"][0] == np.datetime64(T0, "us")
    assert (int(result["packets"][0]), int(result["bytes"][0]), int(result["flows"][0])) == (30, 30_000, 2)
    assert result["links"][0] == ["leaf1-spine1", "leaf1-spine2", "leaf2-spine1"]
    assert set(result["job"]) == {"job-a"} and set(result["exporter"]) == {"c1"}


def test_an_iteration_is_exported_once_when_no_row_can_still_join_it() -> None:
    builder = IterationBuilder(IterationConfig(gap_ms=5))
    columns, classes = rows([(0, 10, "l1", 0, "job-a", "data"), (50, 60, "l1", 0, "job-a", "data")])
    first = builder.update(columns, classes, complete_before_us=T0 + 62 * MS, missing_until_us=NONE)
    assert first["allreduce_ms"].tolist() == [10.0]  # the second may still grow until 65 ms
    more, more_classes = rows([(0, 10, "l1", 0, "job-a", "data"), (50, 60, "l1", 0, "job-a", "data"),
                               (61, 70, "l2", 1, "job-a", "data")])
    second = builder.update(more, more_classes, complete_before_us=ALL, missing_until_us=NONE)
    assert second["iteration"].tolist() == [1] and second["allreduce_ms"].tolist() == [20.0]
    assert second["period_ms"].tolist() == [50.0]


def test_an_iteration_that_may_have_left_the_window_is_skipped() -> None:
    columns, classes = rows([(0, 10, "l1", 0, "job-a", "data"), (50, 60, "l1", 0, "job-a", "data")])
    result = IterationBuilder().update(columns, classes, ALL, missing_until_us=T0 - 2 * MS)
    assert result["allreduce_ms"].tolist() == [10.0] and result["iteration"].tolist() == [0]
    assert result["ts"][0] == np.datetime64(T0 + 50 * MS, "us")


def test_no_job_no_iterations() -> None:
    columns, classes = rows([(0, 10, "l1", 0, "", "data")])
    result = IterationBuilder().update(columns, classes, ALL, NONE)
    assert {name: len(column) for name, column in result.items()} == dict.fromkeys(column_names("iterations"), 0)


def test_gap_is_validated() -> None:
    with pytest.raises(ValueError, match="gap_ms"):
        IterationConfig(gap_ms=0)
