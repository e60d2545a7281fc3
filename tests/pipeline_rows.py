"""Synthetic record batches for the pipeline tests: random values in every column of records.py."""

from __future__ import annotations

import numpy as np

from pipeline import records
from pipeline.store import Store

LINKS = np.array([f"leaf{leaf}-spine{spine}" for leaf in range(1, 5) for spine in range(1, 3)], dtype=object)
APPS = np.array(["rocev2", "rocev2-cnp", "tls", "bgp"], dtype=object)
# The samples' day, months back: retention counts from arrival, so old records must stay.
START_US = 1_768_474_800_000_000
SUMMED = ("packets", "bytes", "ecn_ce", "cnp")


def random_flows(
    rows: int, *, seed: int = 0, links: np.ndarray = LINKS, start_us: int = START_US
) -> dict[str, np.ndarray]:
    """Flow rows over `links` within the hour after `start_us`, with random counters (also bench.pipeline's)."""
    rng = np.random.default_rng(seed)
    batch = records.empty_columns("flows", rows)
    start = start_us + rng.integers(0, 3_600_000_000, rows)
    batch["ts_start"] = start.astype("datetime64[us]")
    batch["ts_end"] = (start + rng.integers(0, 1_000_000, rows)).astype("datetime64[us]")
    link = rng.integers(0, len(links), rows)
    batch["link"] = links[link]
    batch["leaf"] = np.array([name.split("-")[0] for name in links], dtype=object)[link]
    batch["spine"] = np.array([name.split("-")[1] for name in links], dtype=object)[link]
    batch["direction"] = np.array(["up", "down"], dtype=object)[rng.integers(0, 2, rows)]
    batch["app"] = APPS[rng.integers(0, len(APPS), rows)]
    ips = np.zeros((rows, 16), dtype=np.uint8)
    ips[:, 10:12] = 0xFF
    ips[:, 12:] = rng.integers(0, 256, (rows, 4), dtype=np.uint8)
    batch["src_ip"] = ips
    batch["dst_ip"] = ips[::-1].copy()
    for column in ("outer_src_ip", "outer_dst_ip"):  # :: (no tunnel), as V16 values like the collector's
        batch[column] = np.zeros(rows, dtype=f"V{ips.shape[1]}")
    batch["packets"] = rng.integers(1, 10_000, rows, dtype=np.uint64)
    batch["bytes"] = batch["packets"] * rng.integers(64, 4096, rows, dtype=np.uint64)
    batch["ecn_ect"] = batch["packets"]
    batch["ecn_ce"] = rng.integers(0, 100, rows, dtype=np.uint64)
    batch["cnp"] = rng.integers(0, 10, rows, dtype=np.uint64)
    batch["sampling_rate"] = np.ones(rows, dtype=np.uint32)
    return batch


def fabric_flows(
    rows: int, *, first_row: int = 0, flows: int = 100_000, hosts: int = 4096, seed: int = 0,
    links: np.ndarray = LINKS, start_us: int = START_US
) -> dict[str, np.ndarray]:
    """Rows `first_row`.. of a fabric as the collector exports it: `flows` flows, each on one link and address
    pair among `hosts` hosts, one row per flow and second (the active timeout), second after second; counters
    random. Unlike random_flows, the rollups fold rows: a second holds `flows` rows, a pair recurs."""
    batch = random_flows(rows, seed=seed + first_row + 1, links=links, start_us=start_us)
    fabric = np.random.default_rng(seed)
    link = fabric.integers(0, len(links), flows)
    direction = fabric.integers(0, 2, flows)
    app = fabric.integers(0, len(APPS), flows)
    pair = fabric.integers(0, hosts, (flows, 2))
    offset_us = fabric.integers(0, 1_000_000, flows)
    index = np.arange(first_row, first_row + rows)
    flow, second = index % flows, index // flows
    start = start_us + second * 1_000_000 + offset_us[flow]
    duration = batch["ts_end"] - batch["ts_start"]
    batch["ts_start"] = start.astype("datetime64[us]")
    batch["ts_end"] = batch["ts_start"] + duration
    batch["link"] = links[link[flow]]
    batch["leaf"] = np.array([name.split("-")[0] for name in links], dtype=object)[link[flow]]
    batch["spine"] = np.array([name.split("-")[1] for name in links], dtype=object)[link[flow]]
    batch["direction"] = np.array(["up", "down"], dtype=object)[direction[flow]]
    batch["app"] = APPS[app[flow]]
    for column, side in (("src_ip", 0), ("dst_ip", 1)):
        host = pair[flow, side]
        ips = np.zeros((rows, 16), dtype=np.uint8)
        ips[:, 10:12] = 0xFF
        ips[:, 12] = 10
        ips[:, 14] = host >> 8
        ips[:, 15] = host & 0xFF
        batch[column] = ips
    return batch


def expected_sums(batches: list[dict[str, np.ndarray]]) -> tuple[int, ...]:
    """(rows, sum packets, sum bytes, sum ecn_ce, sum cnp) over the batches."""
    return (sum(len(b["packets"]) for b in batches),
            *(sum(int(b[name].sum()) for b in batches) for name in SUMMED))


def stored_sums(store: Store, table: str = "flows") -> tuple[int, ...]:
    """The same figures as expected_sums, read from a table or rollup (rollups: sum of their flows)."""
    rows = "count()" if table == "flows" else "sum(flows)"
    result = store.query(f"SELECT {rows}, {', '.join(f'sum({name})' for name in SUMMED)} FROM {table}")
    return tuple(int(value) for value in result.rows[0])
