"""Link bins: exact per-10 ms RoCE ECN/CNP/PFC counts, bins split across batches counted once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from collectors.link_bins import LinkBins, LinkBinsConfig, bin_groups
from collectors.packets import DecodedPackets
from pipeline.topology import DOWN, UNKNOWN, UP, load_topology

TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "samples" / "topology.yaml")
T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, aligned to 10 ms


def decoded(ts_us: list[int], **columns: list[int]) -> DecodedPackets:
    """A batch of n packets: every column zero unless given."""
    n = len(ts_us)
    values: dict[str, np.ndarray] = {}
    for field in dataclasses.fields(DecodedPackets):
        shape = (n, 8) if field.name == "pfc_quanta" else (n,)
        flags = {"ok", "is_roce", "fecn", "becn", "vxlan"}
        dtype = bool if field.name in flags else np.int64
        values[field.name] = np.zeros(shape, dtype=dtype)
    values["ok"][:] = True
    values["ts_ns"] = np.array(ts_us, dtype=np.int64) * 1000
    for name, column in columns.items():
        values[name] = np.array(column, dtype=values[name].dtype)
    return DecodedPackets(**values)


def test_counts_per_link_direction_and_bin() -> None:
    bins = LinkBins(TOPOLOGY, LinkBinsConfig(lateness_us=0))
    link = TOPOLOGY.link("leaf2-spine1").index
    batch = decoded(
        [T0_US + 100, T0_US + 200, T0_US + 9_999, T0_US + 10_000, T0_US + 300],
        link=[link, link, link, link, link],
        direction=[DOWN, DOWN, DOWN, DOWN, UP],
        wire_len=[1000, 1000, 64, 1000, 500],
        is_roce=[1, 1, 1, 1, 1],
        ecn=[2, 3, 3, 2, 2],
        bth_opcode=[0x0A, 0x0A, 0x81, 0x0A, 0x0A],
    )
    closed = bins.update(batch)
    rest = bins.flush()
    rows = {name: np.concatenate([closed[name], rest[name]]) for name in closed}
    got = {
        (r_ts.astype(np.int64), d): (int(p), int(b), int(ect), int(ce), int(cnp), int(fce), int(lce))
        for r_ts, d, p, b, ect, ce, cnp, fce, lce in zip(
            rows["ts"], rows["direction"], rows["packets"], rows["bytes"], rows["roce_ect"], rows["roce_ce"],
            rows["cnp"], rows["ts_first_ce"].astype(np.int64), rows["ts_last_ce"].astype(np.int64), strict=True,
        )
    }
    assert got == {
        (T0_US, "down"): (3, 2064, 3, 2, 1, T0_US + 200, T0_US + 9_999),
        (T0_US, "up"): (1, 500, 1, 0, 0, 0, 0),
        (T0_US + 10_000, "down"): (1, 1000, 1, 0, 0, 0, 0),
    }
    assert set(rows["link"]) == {"leaf2-spine1"} and set(rows["spine"]) == {"spine1"}


def test_bin_split_across_batches_is_one_row_and_waits_for_watermark() -> None:
    bins = LinkBins(TOPOLOGY, LinkBinsConfig(lateness_us=5_000))
    link = TOPOLOGY.link("leaf1-spine2").index
    first = bins.update(decoded([T0_US + 1_000, T0_US + 2_000], link=[link, link], direction=[UP, UP]))
    assert len(first["ts"]) == 0
    second = bins.update(decoded([T0_US + 9_000, T0_US + 14_000], link=[link, link], direction=[UP, UP]))
    assert len(second["ts"]) == 0, "bin 0 must stay open until the watermark passes its end plus lateness"
    third = bins.update(decoded([T0_US + 15_500], link=[link], direction=[UP]))
    assert third["ts"].astype(np.int64).tolist() == [T0_US]
    assert third["packets"].tolist() == [3]
    assert third["ts_first"].astype(np.int64).tolist() == [T0_US + 1_000]
    assert third["ts_last"].astype(np.int64).tolist() == [T0_US + 9_000]
    rest = bins.flush()
    assert rest["packets"].tolist() == [2]


def test_pfc_pauses_and_unattributed_or_malformed_packets() -> None:
    bins = LinkBins(TOPOLOGY, LinkBinsConfig(lateness_us=0))
    link = TOPOLOGY.link("leaf3-spine1").index
    quanta = np.zeros((4, 8), dtype=np.int64)
    quanta[0, 3] = 0xFFFF
    quanta[1, 3] = 0  # a resume frame (quanta 0) is not a pause
    batch = decoded(
        [T0_US + 1, T0_US + 2, T0_US + 3, T0_US + 4],
        link=[link, link, -1, link],
        direction=[UNKNOWN] * 4,
        pfc_enable=[0x08, 0x08, 0x08, 0x08],
        ok=[1, 1, 1, 0],
    )
    batch = dataclasses.replace(batch, pfc_quanta=quanta)
    bins.update(batch)
    rows = bins.flush()
    assert rows["packets"].tolist() == [2]
    assert rows["pfc_pause"].tolist() == [1]
    assert rows["pfc_quanta"].tolist() == [0xFFFF]


def test_grouping_by_table_equals_sorting_whatever_the_batch_spans() -> None:
    rng = np.random.default_rng(7)
    for slots in (1, 3, 40, 100_000):  # few slots take the table, a batch spread wide the sort
        slot = 178_000_000 + rng.integers(0, slots, 5_000)
        lane = (rng.integers(0, 1024, 5_000) << 2) | rng.integers(0, 3, 5_000)
        unique, inverse = bin_groups(slot, lane)
        want_unique, want_inverse = np.unique((slot << 16) | lane, return_inverse=True)
        assert np.array_equal(unique, want_unique)
        assert np.array_equal(inverse, want_inverse)
