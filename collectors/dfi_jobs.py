"""Training jobs from RoCE burst timing: flows whose bursts recur with one period and start together belong to
one collective; the hosts they join form the job.

Each flow brings its burst start times (the flow table starts a burst after a silence longer than a gap far
below an iteration). A flow is periodic when its burst intervals vary little. Periodic flows are clustered
greedily: a flow joins the first cluster whose first member has the same period and whose bursts its own
bursts meet within a tolerance; the cluster's hosts are then checked for the shape of a collective (every
member sends and receives), which a pipeline's chain of stages lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class JobConfig:
    """How regular and how aligned bursts must be to count as one collective."""

    min_bursts: int = 3  # bursts a flow needs before its period means anything
    max_period_cv: float = 0.25  # std/mean of a periodic flow's burst intervals
    period_tolerance: float = 0.1  # relative period difference within one job
    align_us: int = 2000  # burst starts of one collective step lie within this (or align_fraction of the period)
    align_fraction: float = 0.05
    min_aligned: float = 0.8  # share of a flow's bursts (in the overlap) that must meet the cluster's bursts
    min_hosts: int = 3  # fewer hosts than this exchange pairwise: p2p


@dataclass(frozen=True, slots=True)
class BurstTrains:
    """Per flow, its sorted burst start times: flow i's are `start_us[offsets[i] : offsets[i + 1]]`."""

    start_us: np.ndarray  # int64
    offsets: np.ndarray  # int64, one more than the flows

    def of(self, flow: int) -> np.ndarray:
        return self.start_us[self.offsets[flow] : self.offsets[flow + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1


def periods(trains: BurstTrains, config: JobConfig) -> np.ndarray:
    """Median burst interval (µs) of each flow, 0 when it has too few bursts or they are irregular."""
    result = np.zeros(len(trains), dtype=np.float64)
    for flow in range(len(trains)):
        train = trains.of(flow)
        if len(train) < config.min_bursts:
            continue
        gaps = np.diff(train).astype(np.float64)
        if gaps.mean() > 0 and gaps.std() / gaps.mean() <= config.max_period_cv:
            result[flow] = np.median(gaps)
    return result


def aligned_share(train: np.ndarray, reference: np.ndarray, tolerance_us: float) -> tuple[float, int]:
    """Share of `train`'s bursts inside `reference`'s span that have a reference burst within tolerance,
    and how many bursts were compared."""
    inside = train[(train >= reference[0] - tolerance_us) & (train <= reference[-1] + tolerance_us)]
    if not len(inside):
        return 0.0, 0
    if len(reference) == 1:
        nearest = np.abs(inside - reference[0])
    else:
        after = np.clip(np.searchsorted(reference, inside), 1, len(reference) - 1)
        nearest = np.minimum(np.abs(inside - reference[after - 1]), np.abs(reference[after] - inside))
    return float(np.mean(nearest <= tolerance_us)), len(inside)


def clusters(trains: BurstTrains, flows: np.ndarray, config: JobConfig) -> list[list[int]]:
    """Groups of the periodic `flows` that burst together, each a list of flow indexes."""
    period = periods(trains, config)
    candidates = [int(f) for f in flows if period[f] > 0]
    candidates.sort(key=lambda f: (period[f], int(trains.of(f)[0])))
    groups: list[list[int]] = []
    for flow in candidates:
        train = trains.of(flow)
        for group in groups:
            leader = group[0]
            if abs(period[flow] - period[leader]) > config.period_tolerance * period[leader]:
                continue
            tolerance = max(config.align_us, config.align_fraction * period[leader])
            share, compared = aligned_share(train, trains.of(leader), tolerance)
            if compared >= config.min_bursts and share >= config.min_aligned:
                group.append(flow)
                break
        else:
            groups.append([flow])
    return groups


def is_collective(senders: np.ndarray, receivers: np.ndarray, config: JobConfig) -> bool:
    """Enough hosts, and every one of them both sends and receives (a ring or a tree, not a chain)."""
    hosts = np.union1d(senders, receivers)
    return len(hosts) >= config.min_hosts and bool(np.isin(hosts, senders).all() and np.isin(hosts, receivers).all())
