"""Rhythm and clustering of burst trains: a grid survives split and merged bursts; irregular trains have none."""

from __future__ import annotations

import numpy as np

from collectors.dfi_jobs import BurstTrains, JobConfig, clusters, is_collective, rhythm

CONFIG = JobConfig()
PERIOD = 30_000


def grid(count: int = 9, phase: int = 0, period: int = PERIOD) -> np.ndarray:
    return 5_000 + phase + np.arange(count, dtype=np.int64) * period


def trains(*flows: np.ndarray) -> BurstTrains:
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in flows])]).astype(np.int64)
    return BurstTrains(np.concatenate(flows).astype(np.int64), offsets)


def test_regular_train_has_its_period() -> None:
    found = rhythm(grid() + np.array([0, 120, -80, 40, 300, -200, 10, 90, 0]), CONFIG)
    assert found is not None
    assert abs(found.period - PERIOD) < 100
    assert len(found.on_grid) == 9


def test_a_burst_split_by_a_reroute_gap_keeps_the_rhythm() -> None:
    split = np.sort(np.append(grid(), grid()[3] + 9_500))  # burst 3 resumes after a 6 ms hole
    found = rhythm(split, CONFIG)
    assert found is not None
    assert abs(found.period - PERIOD) < 100
    assert len(found.on_grid) == 9


def test_a_missing_burst_keeps_the_rhythm() -> None:
    merged = np.delete(grid(), 4)  # a stretched iteration ran into the next one
    found = rhythm(merged, CONFIG)
    assert found is not None
    assert abs(found.period - PERIOD) < 100


def test_irregular_or_short_trains_have_no_rhythm() -> None:
    rng = np.random.default_rng(5)
    assert rhythm(np.cumsum(rng.integers(5_000, 90_000, 10)), CONFIG) is None
    assert rhythm(grid(count=2), CONFIG) is None


def test_flows_cluster_by_period_and_phase() -> None:
    bursts = trains(grid(), grid() + 700, grid(phase=12_000), grid(period=45_000), grid() + 300)
    assert sorted(sorted(group) for group in clusters(bursts, np.arange(5), CONFIG)) == [[0, 1, 4], [2], [3]]


def test_flows_without_rhythm_are_left_out() -> None:
    bursts = trains(grid(), np.array([1_000, 50_000, 51_000, 130_000, 133_000, 210_000], dtype=np.int64))
    assert clusters(bursts, np.arange(2), CONFIG) == [[0]]


def test_collective_shape_needs_every_host_to_send_and_receive() -> None:
    assert is_collective(np.array([0, 1, 2]), np.array([1, 2, 0]), CONFIG)
    assert not is_collective(np.array([0, 1]), np.array([1, 2]), CONFIG)
    assert not is_collective(np.array([0, 1]), np.array([1, 0]), CONFIG)
