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
    batch["packets"] = rng.integers(1, 10_000, rows, dtype=np.uint64)
    batch["bytes"] = batch["packets"] * rng.integers(64, 4096, rows, dtype=np.uint64)
    batch["ecn_ect"] = batch["packets"]
    batch["ecn_ce"] = rng.integers(0, 100, rows, dtype=np.uint64)
    batch["cnp"] = rng.integers(0, 10, rows, dtype=np.uint64)
    batch["sampling_rate"] = np.ones(rows, dtype=np.uint32)
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
