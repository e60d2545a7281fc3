"""DFI in the stream: the flow table's exported rows get their `traffic_class` and `job`, and the jobs'
iterations are built, from a sliding window of recent rows.

Behaviour needs history (a job shows only after a few iterations), so DFI reads the last `window_s` of packet
time; and it costs a pass over that window, so it runs at most once per `every_s` of packet time (the flow
export interval). A row of a flow the last run classified is released at once with that run's class and job,
so rows reach the detectors milliseconds after the flow table closed them; a row of a flow no run has seen yet
is held until the next run, and so is every row after it: rows leave in the order the flow table exported
them, which the detectors' lateness relies on. Bursts come from the rows themselves: the flow table cuts rows
at pauses and flags the rows that began a burst.

Memory is bounded against a flood of distinct flows: a run also starts when `max_rows // 4` rows wait for
one (so held rows never pile up within an interval), and the window keeps at most the `max_rows` rows that
ended last (the older ones count as missing, as rows past `window_s` do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from collectors.dfi import ROW_COLUMNS, DfiConfig, FlowClasses, FlowWindow, classify_flows
from collectors.dfi_jobs import BurstTrains
from collectors.flows import BURST_START
from collectors.iterations import IterationBuilder, IterationConfig
from collectors.job_names import JobNameSource
from pipeline.addresses import fixed16
from pipeline.labels import TRAFFIC_CLASSES
from pipeline.records import FLOWS, ITERATIONS, Column

Columns = dict[str, np.ndarray]
DEFAULT_WINDOW_S = 10.0  # a few periods of the slowest training step worth calling periodic
DEFAULT_MAX_ROWS = 262_144  # a few hundred MB at most with the rows waiting for a run
WINDOW_COLUMNS = (*dict.fromkeys((*ROW_COLUMNS, "link")), BURST_START)
_KEY_COLUMNS = ("src_port", "dst_port", "proto", "vni", "roce_qp")  # with the addresses: DFI's flow, no link
_NEVER = np.iinfo(np.int64).min
_CLASS_NAMES = np.asarray(TRAFFIC_CLASSES, dtype=object)


@dataclass(frozen=True, slots=True)
class DfiStreamConfig:
    """`window_s` of packet time DFI looks back over; `every_s` between two runs (packet time); at most
    `max_rows` rows in the window; `job_names` the scheduler's names for the jobs found, asked again at every
    run (a jobs file may have changed)."""

    window_s: float = DEFAULT_WINDOW_S
    every_s: float = 1.0
    max_rows: int = DEFAULT_MAX_ROWS
    dfi: DfiConfig = field(default_factory=DfiConfig)
    iterations: IterationConfig = field(default_factory=IterationConfig)
    job_names: JobNameSource | None = None

    def __post_init__(self) -> None:
        if not 0 < self.every_s <= self.window_s:
            raise ValueError("every_s must be > 0 and at most window_s")
        if self.max_rows < 4:
            raise ValueError("max_rows must be at least 4")


@dataclass(frozen=True, slots=True)
class Labelled:
    """What one step releases: `flows` rows (FLOWS columns, labelled) and `iterations` rows."""

    flows: Columns
    iterations: Columns

    @classmethod
    def empty(cls) -> Labelled:
        return cls(_no_rows(FLOWS), _no_rows(ITERATIONS))


class DfiStream:
    """Labels exported flow rows, holding those of flows DFI has not classified yet until its next run; call
    `flush` at the end of input."""

    def __init__(self, config: DfiStreamConfig | None = None, exporter: str = "") -> None:
        self.config = config or DfiStreamConfig()
        self._every_ns = round(self.config.every_s * 1e9)
        self._window_us = round(self.config.window_s * 1e6)
        self._iterations = IterationBuilder(self.config.iterations, exporter)
        self._pending: list[Columns] = []  # window columns of every row since the last run
        self._pending_rows = 0
        self._held: list[Columns] = []  # rows waiting for the next run (a suffix of the pending ones)
        self._known = _KnownFlows.empty()
        self._window: Columns | None = None
        self._missing_until_us = _NEVER  # latest row end dropped from the window
        self._ran: int | None = None  # interval of packet time of the last run

    def add(self, flows: Columns, now_ns: int) -> Labelled:
        """Take rows (FLOWS columns plus BURST_START) exported by packet time `now_ns`; returns the rows it can
        label now and, when this moves packet time into a new interval, the held rows and new iterations."""
        released = _no_rows(FLOWS)
        if len(flows[BURST_START]):
            self._pending.append(_window_rows(flows))
            self._pending_rows += len(flows[BURST_START])
            labels = None if self._held else self._known.labels(flows)
            if labels is None:
                self._held.append(flows)
            else:
                released = _labelled(flows, *labels)
        interval = now_ns // self._every_ns
        if self._ran is None:
            self._ran = interval
        if interval <= self._ran and self._pending_rows < self.config.max_rows // 4:
            return Labelled(released, _no_rows(ITERATIONS))
        self._ran = max(self._ran, interval)  # a run forced by the rows waiting keeps the interval's bound
        interval = self._ran
        ran = self._run(complete_before_us=interval * self._every_ns // 1000, now_us=now_ns // 1000, final=False)
        parts = [part for part in (released, ran.flows) if len(part["ts_start"])]
        return Labelled(_concat(parts) if parts else released, ran.iterations)

    def flush(self, flows: Columns) -> Labelled:
        """Take the last rows (the flow table's flush), label every held row and export every iteration (end of
        input)."""
        if len(flows[BURST_START]):
            self._pending.append(_window_rows(flows))
            self._held.append(flows)
        return self._run(complete_before_us=np.iinfo(np.int64).max, now_us=np.iinfo(np.int64).max, final=True)

    def _run(self, complete_before_us: int, now_us: int, *, final: bool) -> Labelled:
        if not self._pending and self._window is None:
            return Labelled.empty()
        parts = [self._window] if self._window is not None else []
        parts += self._pending
        self._pending, self._pending_rows, self._window = [], 0, None
        self._known = _KnownFlows.empty()  # replaced below: the old window, rows and keys go before the run
        window = _concat(parts)
        del parts
        bursts = BurstTrains.from_rows(window["ts_start"].astype(np.int64), window[BURST_START])
        names = self.config.job_names.current() if self.config.job_names is not None else None
        classes = classify_flows(FlowWindow(window, bursts), self.config.dfi, names)
        iterations = self._iterations.update(window, classes, complete_before_us, self._missing_until_us)
        if not final:
            self._known = _KnownFlows.of(window, classes)
        self._trim(window, now_us)
        if not self._held:
            return Labelled(_no_rows(FLOWS), iterations)
        flows = _concat(self._held)
        self._held = []
        fresh = slice(len(window[BURST_START]) - len(flows[BURST_START]), None)
        return Labelled(_labelled(flows, classes.traffic_class[fresh], classes.job[fresh]), iterations)

    def _trim(self, window: Columns, now_us: int) -> None:
        """Keep the rows that ended within `window_s` of `now_us`, at most the `max_rows` that ended last."""
        end = window["ts_end"].astype(np.int64)
        keep = end >= now_us - self._window_us
        if keep.sum() > self.config.max_rows:
            keep &= end >= np.partition(end, len(end) - self.config.max_rows)[len(end) - self.config.max_rows]
        if not keep.all():
            self._missing_until_us = max(self._missing_until_us, int(end[~keep].max()))
        self._window = {name: column[keep] for name, column in window.items()}


@dataclass(frozen=True, slots=True)
class _KnownFlows:
    """The class and job the last DFI run gave each flow of its window, by flow key (sorted)."""

    keys: np.ndarray  # void, sorted
    traffic_class: np.ndarray  # uint8
    job: np.ndarray  # object, str

    @classmethod
    def empty(cls) -> _KnownFlows:
        return cls(np.zeros(0, dtype="V1"), np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=object))

    @classmethod
    def of(cls, window: Columns, classes: FlowClasses) -> _KnownFlows:
        _, first = np.unique(classes.flow, return_index=True)
        keys = _flow_keys({name: window[name][first] for name in ("src_ip", "dst_ip", *_KEY_COLUMNS)})
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], classes.traffic_class[first][order], classes.job[first][order])

    def labels(self, rows: Columns) -> tuple[np.ndarray, np.ndarray] | None:
        """Class codes and jobs of `rows`, or None if any row's flow is unknown."""
        if not len(self.keys):
            return None
        keys = _flow_keys(rows)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        if not (self.keys[at] == keys).all():
            return None
        return self.traffic_class[at], self.job[at]


def _flow_keys(rows: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each row's flow as DFI groups rows (addresses, ports, protocol, VNI, QP; not the link), one
    fixed-width byte string per row so keys sort and compare as one array."""
    count = len(rows["src_port"])
    parts = [fixed16(rows[name]).view(np.uint8).reshape(count, 16) for name in ("src_ip", "dst_ip")]
    parts += [np.ascontiguousarray(rows[name]).view(np.uint8).reshape(count, rows[name].dtype.itemsize)
              for name in _KEY_COLUMNS]
    packed = np.ascontiguousarray(np.concatenate(parts, axis=1))
    return packed.view(f"V{packed.shape[1]}").ravel()


def _window_rows(flows: Columns) -> Columns:
    """The WINDOW_COLUMNS of `flows`, addresses as V16 values: a bytes object per address would cost the window
    four times the memory (and the window holds up to `max_rows` rows under a flood of flows)."""
    rows = {name: flows[name] for name in WINDOW_COLUMNS}
    for name in ("src_ip", "dst_ip"):
        rows[name] = fixed16(rows[name])
    return rows


def _labelled(flows: Columns, traffic_class: np.ndarray, job: np.ndarray) -> Columns:
    """`flows` as FLOWS columns with their DFI labels."""
    rows = {name: column for name, column in flows.items() if name != BURST_START}
    rows["traffic_class"] = _CLASS_NAMES[traffic_class]
    rows["job"] = job
    return rows


def _no_rows(table: tuple[Column, ...]) -> Columns:
    return {column.name: np.zeros(0, dtype=column.numpy) for column in table}


def _concat(parts: Sequence[Mapping[str, np.ndarray]]) -> Columns:
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
