"""The samples' ground truth as flow sums, and record batches summed the same way, for the live-source tests
(captured, sampled or exported rows are cut by arrival time, so they are compared summed over the run)."""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from pathlib import Path

from pipeline.source import Columns

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
KEY = ("link", "direction", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "vlan", "vni", "roce_qp")
SUMS = ("packets", "bytes", "ecn_ect", "ecn_ce", "cnp")


def summed_flows(parts: list[Columns]) -> dict[tuple[object, ...], dict[str, int]]:
    """Flow rows summed per truth key over the whole capture (live rows are cut by arrival time)."""
    flows: dict[tuple[object, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS, 0))
    for rows in parts:
        for i in range(len(rows["packets"])):
            key = tuple(
                _address(rows[name][i]) if name.endswith("_ip") else
                rows[name][i] if rows[name].dtype == object else int(rows[name][i])
                for name in KEY
            )
            for name in SUMS:
                flows[key][name] += int(rows[name][i])
    return dict(flows)


def _address(raw: bytes) -> str:
    """A row's address, whether a bytes object (read from Kafka) or a V16 value (the collector's own rows)."""
    address = ipaddress.IPv6Address(bytes(raw))
    return str(address.ipv4_mapped or address)


def truth_flows(name: str) -> dict[tuple[object, ...], dict[str, int]]:
    """samples/<name>.truth.json's flows, summed values by the same key."""
    truth = json.loads((SAMPLES / f"{name}.truth.json").read_text())
    return {tuple(flow[k] for k in KEY): {s: flow[s] for s in SUMS} for flow in truth["flows"]}
