"""Training jobs from RoCE burst timing: flows whose bursts recur on one beat and start together belong to
one collective; the hosts they join form the job.

Each flow brings its burst start times: the starts of its flow-table rows that began after a pause (the flow
table cuts rows at a silence far longer than the flow's own packet spacing, far below an iteration). A flow
has a rhythm when most of its bursts fall on a grid of one period; bursts off the grid (a burst split by loss
during a reroute, or two merged by a stretched iteration) do not break it.
Flows with a rhythm are clustered greedily: a flow joins the first cluster whose first member has the same
period and on whose grid its own bursts fall; the cluster's hosts are then checked for the shape of a
collective (every member sends and receives), which a pipeline's chain of stages lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class JobConfig:
    """How regular and how aligned bursts must be to count as one collective."""

    min_bursts: int = 3  # bursts on the grid a flow needs before its period means anything
    min_on_grid: float = 0.7  # share of a flow's bursts that must lie on its grid
    period_tolerance: float = 0.1  # relative period difference within one job
    align_us: int = 2000  # burst starts of one step lie within this of the grid (or align_fraction of the period)
    align_fraction: float = 0.05
    min_aligned: float = 0.8  # share of a flow's on-grid bursts that must lie on the cluster leader's grid
    min_hosts: int = 3  # fewer hosts than this exchange pairwise: p2p


@dataclass(frozen=True, slots=True)
class BurstTrains:
    """Per flow, its sorted burst start times: flow i's are `start_us[offsets[i] : offsets[i + 1]]`."""

    start_us: np.ndarray  # int64
    offsets: np.ndarray  # int64, one more than the flows

    @classmethod
    def from_rows(cls, start_us: np.ndarray, burst_start: np.ndarray) -> BurstTrains:
        """Trains of flow-table rows (one train per row): a row that began a burst brings its start time, a row
        that continues one (begun by an export interval boundary) brings none."""
        offsets = np.concatenate([[0], np.cumsum(burst_start.astype(np.int64))]).astype(np.int64)
        return cls(start_us[burst_start].astype(np.int64), offsets)

    def of(self, flow: int) -> np.ndarray:
        return self.start_us[self.offsets[flow] : self.offsets[flow + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True, slots=True)
class Rhythm:
    """A grid `origin + k * period` (µs) on which most of a flow's bursts start."""

    period: float
    origin: float
    on_grid: np.ndarray  # int64, the flow's burst starts that lie on the grid


def tolerance(period: float, config: JobConfig) -> float:
    return max(config.align_us, config.align_fraction * period)


def _distance_to_grid(starts: np.ndarray, origin: float, period: float) -> np.ndarray:
    phase = np.mod(starts - origin, period)
    return np.minimum(phase, period - phase)


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y over x."""
    x_mean, y_mean = x.mean(), y.mean()
    slope = float(((x - x_mean) * (y - y_mean)).sum() / ((x - x_mean) ** 2).sum())
    return slope, float(y_mean - slope * x_mean)


def rhythm(train: np.ndarray, config: JobConfig) -> Rhythm | None:
    """The flow's grid: period from the median burst interval, then fitted (least squares) to the bursts on it,
    trying each of the first bursts as origin; None when too few bursts lie on any grid."""
    if len(train) < config.min_bursts:
        return None
    period = float(np.median(np.diff(train)))
    if period <= 0:
        return None
    best: Rhythm | None = None
    for origin in train[: config.min_bursts].astype(np.float64):
        fitted_origin, fitted_period = origin, period
        for _ in range(2):
            on = _distance_to_grid(train, fitted_origin, fitted_period) <= tolerance(fitted_period, config)
            beats = np.round((train[on] - fitted_origin) / fitted_period)
            if np.ptp(beats) > 0:
                fitted_period, fitted_origin = _line(beats, train[on].astype(np.float64))
        on = _distance_to_grid(train, fitted_origin, fitted_period) <= tolerance(fitted_period, config)
        if best is None or on.sum() > len(best.on_grid):
            best = Rhythm(fitted_period, fitted_origin, train[on])
    enough = best is not None and len(best.on_grid) >= max(config.min_bursts, config.min_on_grid * len(train))
    return best if enough else None


def clusters(trains: BurstTrains, flows: np.ndarray, config: JobConfig) -> list[list[int]]:
    """Groups of `flows` that burst on one shared grid, each a list of flow indexes (flows without a rhythm
    are left out)."""
    rhythms = {int(f): r for f in flows if (r := rhythm(trains.of(int(f)), config)) is not None}
    candidates = sorted(rhythms, key=lambda f: (rhythms[f].period, rhythms[f].origin))
    groups: list[list[int]] = []
    for flow in candidates:
        mine = rhythms[flow]
        for group in groups:
            leader = rhythms[group[0]]
            if abs(mine.period - leader.period) > config.period_tolerance * leader.period:
                continue
            distance = _distance_to_grid(mine.on_grid, leader.origin, leader.period)
            if np.mean(distance <= tolerance(leader.period, config)) >= config.min_aligned:
                group.append(flow)
                break
        else:
            groups.append([flow])
    return groups


def is_collective(senders: np.ndarray, receivers: np.ndarray, config: JobConfig) -> bool:
    """Enough hosts, and every one of them both sends and receives (a ring or a tree, not a chain)."""
    hosts = np.union1d(senders, receivers)
    return len(hosts) >= config.min_hosts and bool(np.isin(hosts, senders).all() and np.isin(hosts, receivers).all())
