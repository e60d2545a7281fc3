"""Interface counters as the switches would report them every 100 ms, for both ends of every
leaf-spine link: cumulative, and consistent with the mirrored packets (DESIGN.md section 5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.records import column_names
from simulator.fabric import Fabric
from simulator.pcap import Written
from simulator.routing import LinkDown, Records, link_is_down

INTERVAL_NS = 100_000_000
SOURCE = "file"


def iso(t_ns: int) -> str:
    moment = datetime.fromtimestamp(t_ns // 1_000_000_000, tz=UTC).replace(microsecond=t_ns % 1_000_000_000 // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_counters(path: Path, fabric: Fabric, start_ns: int, end_ns: int, records: Records, written: Written,
                   pfc: np.ndarray, marked: np.ndarray, downs: list[LinkDown], rng: np.random.Generator, *,
                   on_change: bool = False) -> int:
    """Write one line per interface per 100 ms; ports are 2*link (leaf end) and 2*link+1 (spine end).
    A frame counts at a sample when its copy's time is at or before it; samples run until every copy
    is counted (the last hops of packets sent just before the end land a few µs later). With `on_change`,
    every link going down or up is also a sample at that instant, as gNMI ON_CHANGE reports it.
    Returns the line count."""
    last = max(end_ns, int(records.t_ns.max()) if len(records) else end_ns)
    samples = start_ns + INTERVAL_NS * np.arange(-(-(last - start_ns) // INTERVAL_NS) + 1, dtype=np.int64)
    if on_change:
        changes = np.array([t for down in downs for t in (down.t_down, down.t_up)], dtype=np.int64)
        samples = np.union1d(samples, changes[(changes >= start_ns) & (changes <= samples[-1])])
    n_ports = 2 * len(fabric.links)
    link = records.link.astype(np.int64)
    tx = 2 * link + np.where(records.from_leaf, 0, 1)
    rx = 2 * link + np.where(records.from_leaf, 1, 0)
    sample = np.searchsorted(samples, records.t_ns, side="left")
    keep = sample < len(samples)

    def cumulative(port: np.ndarray, weight: np.ndarray) -> np.ndarray:
        grid = np.zeros((n_ports, len(samples)), dtype=np.int64)
        np.add.at(grid, (port[keep], sample[keep]), weight[keep])
        return np.cumsum(grid, axis=1)

    ones = np.ones(len(records), dtype=np.int64)
    octets_base = rng.integers(10**9, 10**12, (n_ports, 2))
    pkts_base = octets_base // 900
    values = {
        "in_octets": cumulative(rx, written.wire_len) + octets_base[:, :1],
        "out_octets": cumulative(tx, written.wire_len) + octets_base[:, 1:],
        "in_pkts": cumulative(rx, ones) + pkts_base[:, :1],
        "out_pkts": cumulative(tx, ones) + pkts_base[:, 1:],
        "pfc_rx_pause": cumulative(rx, pfc.astype(np.int64)),
        "pfc_tx_pause": cumulative(tx, pfc.astype(np.int64)),
        "ecn_marked": cumulative(tx, marked.astype(np.int64)),
    }
    lines = []
    columns = column_names("counters")
    for k, t in enumerate(samples):
        stamp = iso(int(t))
        for fabric_link in fabric.links:
            up = not link_is_down(downs, np.array([fabric_link.index]), np.array([t]))[0]
            ends = ((f"leaf{fabric_link.leaf + 1}", fabric_link.leaf_port),
                    (f"spine{fabric_link.spine + 1}", fabric_link.spine_port))
            for end, (device, ifname) in enumerate(ends):
                port = 2 * fabric_link.index + end
                row = {
                    "ts": stamp, "device": device, "ifname": ifname, "link": fabric_link.id, "oper_up": int(up),
                    "speed_bps": round(fabric.spec.speed_gbps * 1e9),
                    **{name: int(grid[port, k]) for name, grid in values.items()},
                    "source": SOURCE,
                }
                for name in columns:
                    row.setdefault(name, 0)
                lines.append(json.dumps({name: row[name] for name in columns}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)
