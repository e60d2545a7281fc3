"""Sources + decoder + flow table on every committed sample: the flows equal the generator's ground truth
(keys, packets, wire bytes, ECT, CE, CNP, PSN gaps, first-packet DSCP, first and last packet time, and a
tunnelled flow's outer endpoints: the VTEPs of a VXLAN tenant flow)."""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from collectors.decode import Decoder
from collectors.flows import FlowTable
from collectors.pcapfile import open_capture
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
KEY = ("link", "direction", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "vlan", "vni", "roce_qp")
SUMS = ("packets", "bytes", "ecn_ect", "ecn_ce", "cnp", "psn_gaps")
OUTER = ("outer_src_ip", "outer_dst_ip")


def _address(raw: np.void) -> str:
    address = ipaddress.IPv6Address(bytes(raw))
    return str(address.ipv4_mapped or address)


def collector_flows(pcap: Path) -> dict[tuple[object, ...], dict[str, int]]:
    """Rows of the whole capture summed per flow key, as the truth file lists them."""
    decoder = Decoder(load_topology(SAMPLES / "topology.yaml"))
    table = FlowTable(decoder.topology)
    reader = open_capture(pcap)
    results = [table.update(decoder.decode(batch)) for batch in reader]
    results.append(table.flush())
    assert reader.stats.skipped_total == 0 and decoder.stats.malformed_total == 0
    flows: dict[tuple[object, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS, 0))
    for rows in results:
        for i in range(len(rows["packets"])):
            key = tuple(
                _address(rows[name][i]) if name.endswith("_ip") else
                rows[name][i] if rows[name].dtype == object else int(rows[name][i])
                for name in KEY
            )
            flow = flows[key]
            for name in SUMS:
                flow[name] += int(rows[name][i])
            first = int(rows["ts_start"][i].astype(np.int64))
            last = int(rows["ts_end"][i].astype(np.int64))
            flow.setdefault("dscp", int(rows["dscp"][i]))
            for name in OUTER:
                flow.setdefault(name, _address(rows[name][i]))
            flow["first_ts_us"] = min(flow.get("first_ts_us", first), first)
            flow["last_ts_us"] = max(flow.get("last_ts_us", last), last)
    return flows


def truths() -> list[Path]:
    return sorted(SAMPLES.glob("*.truth.json"))


def test_samples_have_ground_truth() -> None:
    assert truths(), f"no samples/*.truth.json under {SAMPLES}"


@pytest.mark.parametrize("truth_path", truths(), ids=lambda p: p.name.removesuffix(".truth.json"))
def test_flows_equal_ground_truth(truth_path: Path) -> None:
    truth = json.loads(truth_path.read_text())
    ours = collector_flows(truth_path.with_name(truth_path.name.replace(".truth.json", ".pcap")))
    expected = {
        tuple(flow[name] for name in KEY): {name: flow[name] for name in (*SUMS, "dscp", "first_ts_us", "last_ts_us")}
        | {name: flow.get(name, "::") for name in OUTER}
        for flow in truth["flows"]
    }
    assert set(ours) == set(expected)
    differing = {key: (ours[key], want) for key, want in expected.items() if ours[key] != want}
    assert not differing
