"""DFI in the stream: the flow table's exported rows get their `traffic_class` and `job`, and the jobs'
iterations are built, from a sliding window of recent rows.

Behaviour needs history (a job shows only after a few iterations), so DFI reads the last `window_s` of packet
time; and it costs a pass over that window, so it runs at most once per `every_s` of packet time (the flow
export interval): rows are held until the next run, then labelled and released together. Bursts come from
the rows themselves: the flow table cuts rows at pauses and flags the rows that began a burst.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from collectors.dfi import ROW_COLUMNS, DfiConfig, FlowWindow, classify_flows
from collectors.dfi_jobs import BurstTrains
from collectors.flows import BURST_START
from collectors.iterations import IterationBuilder, IterationConfig
from pipeline.labels import TRAFFIC_CLASSES
from pipeline.records import FLOWS, ITERATIONS, Column

Columns = dict[str, np.ndarray]
DEFAULT_WINDOW_S = 10.0  # a few periods of the slowest training step worth calling periodic
WINDOW_COLUMNS = (*dict.fromkeys((*ROW_COLUMNS, "link")), BURST_START)
_NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class DfiStreamConfig:
    """`window_s` of packet time DFI looks back over; `every_s` between two runs (packet time)."""

    window_s: float = DEFAULT_WINDOW_S
    every_s: float = 1.0
    dfi: DfiConfig = field(default_factory=DfiConfig)
    iterations: IterationConfig = field(default_factory=IterationConfig)

    def __post_init__(self) -> None:
        if not 0 < self.every_s <= self.window_s:
            raise ValueError("every_s must be > 0 and at most window_s")


@dataclass(frozen=True, slots=True)
class Labelled:
    """What one step releases: `flows` rows (FLOWS columns, labelled) and `iterations` rows."""

    flows: Columns
    iterations: Columns

    @classmethod
    def empty(cls) -> Labelled:
        return cls(_no_rows(FLOWS), _no_rows(ITERATIONS))


class DfiStream:
    """Holds exported flow rows until the next DFI run; call `flush` at the end of input."""

    def __init__(self, config: DfiStreamConfig | None = None, exporter: str = "") -> None:
        self.config = config or DfiStreamConfig()
        self._every_ns = round(self.config.every_s * 1e9)
        self._window_us = round(self.config.window_s * 1e6)
        self._iterations = IterationBuilder(self.config.iterations, exporter)
        self._pending: list[Columns] = []
        self._window: Columns | None = None
        self._missing_until_us = _NEVER  # latest row end dropped from the window
        self._ran: int | None = None  # interval of packet time of the last run

    def add(self, flows: Columns, now_ns: int) -> Labelled:
        """Take rows (FLOWS columns plus BURST_START) exported by packet time `now_ns`; returns the labelled
        rows and new iterations when this moves packet time into a new interval, else nothing."""
        if len(flows[BURST_START]):
            self._pending.append(flows)
        interval = now_ns // self._every_ns
        if self._ran is None:
            self._ran = interval
        if interval <= self._ran:
            return Labelled.empty()
        self._ran = interval
        return self._run(complete_before_us=interval * self._every_ns // 1000, now_us=now_ns // 1000)

    def flush(self, flows: Columns) -> Labelled:
        """Take the last rows (the flow table's flush), label every held row and export every iteration (end of
        input)."""
        if len(flows[BURST_START]):
            self._pending.append(flows)
        return self._run(complete_before_us=np.iinfo(np.int64).max, now_us=np.iinfo(np.int64).max)

    def _run(self, complete_before_us: int, now_us: int) -> Labelled:
        if not self._pending and self._window is None:
            return Labelled.empty()
        parts = [self._window] if self._window is not None else []
        flows = _concat(self._pending) if self._pending else None
        self._pending = []
        if flows is not None:
            parts.append({name: flows[name] for name in WINDOW_COLUMNS})
        window = _concat(parts)
        bursts = BurstTrains.from_rows(window["ts_start"].astype(np.int64), window[BURST_START])
        classes = classify_flows(FlowWindow(window, bursts), self.config.dfi)
        iterations = self._iterations.update(window, classes, complete_before_us, self._missing_until_us)
        self._trim(window, now_us)
        if flows is None:
            return Labelled(_no_rows(FLOWS), iterations)
        fresh = slice(len(window[BURST_START]) - len(flows[BURST_START]), None)
        flows["traffic_class"] = np.asarray(TRAFFIC_CLASSES, dtype=object)[classes.traffic_class[fresh]]
        flows["job"] = classes.job[fresh]
        del flows[BURST_START]
        return Labelled(flows, iterations)

    def _trim(self, window: Columns, now_us: int) -> None:
        """Keep the rows that ended within `window_s` of `now_us`."""
        end = window["ts_end"].astype(np.int64)
        keep = end >= now_us - self._window_us
        if not keep.all():
            self._missing_until_us = max(self._missing_until_us, int(end[~keep].max()))
        self._window = {name: column[keep] for name, column in window.items()}


def _no_rows(table: tuple[Column, ...]) -> Columns:
    return {column.name: np.zeros(0, dtype=column.numpy) for column in table}


def _concat(parts: list[Mapping[str, np.ndarray]]) -> Columns:
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
