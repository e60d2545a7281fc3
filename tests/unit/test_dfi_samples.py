"""DPI and DFI against the scenario generator's ground truth: pcap -> decode -> DPI -> flow table -> DFI.

Burst trains are built here from the decoded packets with BurstTrains.from_packets, standing in for the flow
table until it keeps them per flow.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collectors.decode import Decoder
from collectors.dfi import FlowWindow, classify_flows
from collectors.dfi_jobs import BurstTrains
from collectors.dpi import classify
from collectors.flows import FlowTable, packet_keys
from collectors.pcapfile import open_capture
from collectors.synthetic.generator import generate
from collectors.synthetic.scenario import load_scenario
from pipeline.addresses import to_bytes16
from pipeline.labels import TRAFFIC_CLASSES

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
KEY = ("src_ip", "dst_ip", "src_port", "dst_port", "proto", "vni", "roce_qp")


def _packed(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    return (ipaddress.IPv6Address(f"::ffff:{ip}") if ip.version == 4 else ip).packed


def collect(pcap: Path) -> tuple[dict[str, np.ndarray], list[tuple], np.ndarray]:
    """Flow rows of the capture, and every packet's flow key (without link) and time in µs."""
    table = FlowTable()
    parts, keys, times = [], [], []
    for batch in open_capture(pcap):
        decoded = Decoder().decode(batch)
        labels = classify(batch.data, decoded)
        parts.append(table.update(decoded, app=labels.app, confidence=labels.confidence))
        ok = np.flatnonzero(decoded.ok)
        columns = packet_keys(decoded, ok)
        src = to_bytes16(columns["src_hi"], columns["src_lo"]).view("V16").ravel().astype(object)
        dst = to_bytes16(columns["dst_hi"], columns["dst_lo"]).view("V16").ravel().astype(object)
        rest = [columns[name].tolist() for name in KEY[2:]]
        keys += [(bytes(s), bytes(d), *r) for s, d, *r in zip(src, dst, *rest, strict=True)]
        times.append(decoded.ts_ns[ok] // 1000)
    parts.append(table.flush())
    rows = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return rows, keys, np.concatenate(times)


def window_of(rows: dict[str, np.ndarray], keys: list[tuple], times: np.ndarray) -> tuple[FlowWindow, list[tuple]]:
    ids: dict[tuple, int] = {}
    flow = np.array([ids.setdefault(key, len(ids)) for key in keys], dtype=np.int64)
    trains = BurstTrains.from_packets(flow, times, len(ids))
    row_keys = [(bytes(s), bytes(d), *r) for s, d, *r in zip(*(rows[name].tolist() for name in KEY), strict=True)]
    per_row = [trains.of(ids[key]) for key in row_keys]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in per_row])]).astype(np.int64)
    return FlowWindow(rows, BurstTrains(np.concatenate(per_row), offsets)), row_keys


@pytest.mark.parametrize(("sample", "seed"), [("mixed", None), ("link_failure", None), ("combo", 77)])
def test_labels_classes_and_jobs_match_the_ground_truth(tmp_path: Path, sample: str, seed: int | None) -> None:
    outputs = generate(load_scenario(SAMPLES / f"{sample}.scenario.yaml"), tmp_path / f"{sample}.pcap", seed)
    truth: dict[str, Any] = json.loads(outputs.truth.read_text())
    expected = {
        (_packed(f["src_ip"]), _packed(f["dst_ip"]), *(f[name] for name in KEY[2:])): f for f in truth["flows"]
    }
    rows, keys, times = collect(outputs.pcap)
    window, row_keys = window_of(rows, keys, times)
    result = classify_flows(window)

    assert set(row_keys) == set(expected)
    apps = [rows["app"][i] or "unknown" for i in range(len(row_keys))]
    assert apps == [expected[key]["app"] for key in row_keys]
    classes = [TRAFFIC_CLASSES[code] for code in result.traffic_class]
    right = sum(got == expected[key]["traffic_class"] for got, key in zip(classes, row_keys, strict=True))
    assert right / len(row_keys) >= 0.95
    found: dict[str, set[bytes]] = {}
    true: dict[str, set[bytes]] = {}
    for job, key in zip(result.job, row_keys, strict=True):
        if job:
            found.setdefault(job, set()).update(key[:2])
        if expected[key]["job"]:
            true.setdefault(expected[key]["job"], set()).update(key[:2])
    assert sorted(map(sorted, found.values())) == sorted(map(sorted, true.values()))
    lowest_hosts = [min(map(ipaddress.ip_address, job["hosts"])) for job in truth["jobs"].values()]
    assert sorted(found) == sorted(f"job-{host}" for host in lowest_hosts)
