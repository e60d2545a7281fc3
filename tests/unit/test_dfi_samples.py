"""DPI and DFI against the scenario generator's ground truth, through the real collector (decode → DPI → flow
table cut at pauses → DFI over its window of rows), on captures generated with the samples' own seeds and
with others."""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collectors.collector import Collector
from collectors.replay import replay_batches
from pipeline.detect.ecmp import EcmpConfig
from pipeline.topology import load_topology
from simulator.generator import generate
from simulator.scenario import load_scenario

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
KEY = ("link", "direction", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "vlan", "vni", "roce_qp")
LABELS = ("app", "app_detail", "traffic_class", "job")


def _address(raw: np.void) -> str:
    address = ipaddress.IPv6Address(bytes(raw))
    return str(address.ipv4_mapped or address)


def last_labels(pcap: Path, topology: Path) -> dict[tuple[object, ...], dict[str, str]]:
    """Per flow key and link, the labels of its last row (the most confident DPI label, the latest DFI view)."""
    labels: dict[tuple[object, ...], dict[str, str]] = {}
    for records in Collector(load_topology(topology)).run(replay_batches([pcap], progress=False)):
        rows = records.flows
        for i in np.argsort(rows["ts_start"], kind="stable"):
            key = tuple(_address(rows[n][i]) if n.endswith("_ip") else rows[n][i] if rows[n].dtype == object
                        else int(rows[n][i]) for n in KEY)
            labels[key] = {name: str(rows[name][i]) for name in LABELS}
    return labels


def partition(jobs: dict[tuple[object, ...], str]) -> set[frozenset[tuple[object, ...]]]:
    """Flows grouped by job (flows without one left out): job names differ, the grouping must not."""
    groups: dict[str, set[tuple[object, ...]]] = defaultdict(set)
    for key, job in jobs.items():
        if job:
            groups[job].add(key)
    return {frozenset(group) for group in groups.values()}


@pytest.mark.parametrize(("sample", "seed"), [
    ("mixed", None), ("mixed", 5), ("link_failure", None), ("combo", 77), ("allreduce_congestion", 21),
])
def test_labels_classes_and_jobs_match_the_ground_truth(tmp_path: Path, sample: str, seed: int | None) -> None:
    outputs = generate(load_scenario(SAMPLES / f"{sample}.scenario.yaml"), tmp_path / f"{sample}.pcap", seed,
                       imbalance=EcmpConfig())
    truth: dict[str, Any] = json.loads(outputs.truth.read_text())
    expected = {tuple(flow[name] for name in KEY): flow for flow in truth["flows"]}
    found = last_labels(outputs.pcap, SAMPLES / f"{sample}.topology.yaml")

    assert set(found) == set(expected)
    assert {key: found[key]["app"] for key in expected} == {key: flow["app"] for key, flow in expected.items()}
    # DPI gives SSH banners as detail, which the truth leaves out; every other detail is exact
    details = {key: flow["app_detail"] for key, flow in expected.items() if flow["app"] != "ssh"}
    assert {key: found[key]["app_detail"] for key in details} == details
    assert all(found[key]["app_detail"].startswith("SSH-") for key in expected.keys() - details.keys())
    right = sum(found[key]["traffic_class"] == flow["traffic_class"] for key, flow in expected.items())
    assert right / len(expected) >= 0.95
    ours = partition({key: labels["job"] for key, labels in found.items()})
    assert ours == partition({key: flow["job"] for key, flow in expected.items()})
    lowest_hosts = [min(map(ipaddress.ip_address, job["hosts"])) for job in truth["jobs"].values()]
    assert sorted({labels["job"] for labels in found.values()} - {""}) == sorted(f"job-{h}" for h in lowest_hosts)
