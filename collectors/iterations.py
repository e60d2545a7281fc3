"""Collective iterations: per training job found by DFI, the all-reduce bursts as `iterations` rows
(pipeline.records ITERATIONS), which the collective-slowdown detector compares with the job's baseline.

An iteration is the job's RoCE data rows (over all its flows and links) that overlap or follow each other
within `gap_ms`: the flow table cuts rows at pauses, so a row lies within one burst of one flow on one link,
and the bursts of one all-reduce overlap across the ring while the compute phase between two all-reduces
leaves every flow silent. An iteration is exported once complete — no member row can still join it, i.e.
its end plus `gap_ms` lies before the time up to which every row has arrived — and numbered per job from 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from collectors.dfi import FlowClasses
from pipeline.records import ITERATIONS

Columns = dict[str, np.ndarray]
DEFAULT_GAP_MS = 5.0  # well above the spacing of one all-reduce's bursts, well below a compute phase
_NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class IterationConfig:
    """Member rows closer than `gap_ms` belong to one iteration."""

    gap_ms: float = DEFAULT_GAP_MS

    def __post_init__(self) -> None:
        if self.gap_ms <= 0:
            raise ValueError("gap_ms must be > 0")


@dataclass(frozen=True, slots=True)
class _Iteration:
    job: str
    ts: int  # µs
    ts_end: int
    packets: int
    bytes: int
    flows: int
    links: list[str]


class IterationBuilder:
    """Turns DFI-labelled windows of flow rows into iteration rows, each iteration exported once."""

    def __init__(self, config: IterationConfig | None = None, exporter: str = "") -> None:
        self.config = config or IterationConfig()
        self._exporter = exporter
        self._gap_us = round(self.config.gap_ms * 1000)
        self._done_until: dict[str, int] = {}  # per job, end of the last iteration taken
        self._last_start: dict[str, int] = {}
        self._count: dict[str, int] = {}

    def update(
        self, rows: Mapping[str, np.ndarray], classes: FlowClasses, complete_before_us: int, missing_until_us: int
    ) -> Columns:
        """Iterations of `rows` (with their DFI `classes`) that ended `gap_ms` before `complete_before_us` (every
        row up to then has arrived) and were not exported yet. Rows up to `missing_until_us` may have left the
        window, so an iteration starting that early may be incomplete and is skipped."""
        start = _us(rows["ts_start"])
        end = _us(rows["ts_end"])
        data = (rows["roce_write"].astype(np.int64) + rows["roce_read"] + rows["roce_send"]) > 0
        member = data & (classes.job != "")
        found: list[_Iteration] = []
        for job in np.unique(classes.job[member].astype(str)):
            mine = np.flatnonzero(member & (classes.job == job) & (start > self._done_until.get(job, _NEVER)))
            found += self._complete(job, mine[np.argsort(start[mine], kind="stable")], rows, classes, start, end,
                                    complete_before_us, missing_until_us)
        return self._columns(found)

    def _complete(
        self, job: str, order: np.ndarray, rows: Mapping[str, np.ndarray], classes: FlowClasses, start: np.ndarray,
        end: np.ndarray, complete_before_us: int, missing_until_us: int,
    ) -> list[_Iteration]:
        """The job's complete iterations among its rows `order` (sorted by start); marks them done."""
        if not len(order):
            return []
        reach = np.maximum.accumulate(end[order])
        new = np.ones(len(order), dtype=bool)
        new[1:] = start[order][1:] > reach[:-1] + self._gap_us
        bounds = np.append(np.flatnonzero(new), len(order))
        taken: list[_Iteration] = []
        for first, stop in itertools.pairwise(bounds.tolist()):
            members = order[first:stop]
            ts, ts_end = int(start[members[0]]), int(reach[stop - 1])
            if ts_end + self._gap_us >= complete_before_us:
                break
            self._done_until[job] = ts_end
            if ts <= missing_until_us + self._gap_us:
                continue
            taken.append(_Iteration(
                job, ts, ts_end, int(rows["packets"][members].sum()), int(rows["bytes"][members].sum()),
                len(np.unique(classes.flow[members])), sorted(set(rows["link"][members].tolist())),
            ))
        return taken

    def _columns(self, found: list[_Iteration]) -> Columns:
        numbers, periods = [], []
        for iteration in found:
            number = self._count.get(iteration.job, 0)
            previous = self._last_start.get(iteration.job)
            numbers.append(number)
            periods.append(0.0 if previous is None else (iteration.ts - previous) / 1000)
            self._count[iteration.job] = number + 1
            self._last_start[iteration.job] = iteration.ts
        values: dict[str, Sequence[object]] = {
            "ts": [i.ts for i in found], "ts_end": [i.ts_end for i in found],
            "exporter": [self._exporter] * len(found), "job": [i.job for i in found], "iteration": numbers,
            "allreduce_ms": [(i.ts_end - i.ts) / 1000 for i in found], "period_ms": periods,
            "packets": [i.packets for i in found], "bytes": [i.bytes for i in found],
            "flows": [i.flows for i in found], "links": [i.links for i in found],
        }
        columns: Columns = {}
        for column in ITERATIONS:
            if column.numpy == "object":
                array = np.empty(len(found), dtype=object)
                for i, value in enumerate(values[column.name]):
                    array[i] = value
                columns[column.name] = array
            elif column.numpy == "datetime64[us]":
                columns[column.name] = np.array(values[column.name], dtype=np.int64).astype("datetime64[us]")
            else:
                columns[column.name] = np.array(values[column.name], dtype=column.numpy)
        return columns


def _us(times: np.ndarray) -> np.ndarray:
    return np.asarray(times).astype("datetime64[us]").astype(np.int64)
