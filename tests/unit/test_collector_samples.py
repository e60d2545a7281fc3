"""The whole collector on the samples and on captures generated with other seeds, against the generator's
truth: rows cut at pauses still add up to the truth's flows exactly, the jobs' iterations match the truth's
all-reduce times, and the detectors fed the collector's records find the truth's slowdown and recoveries."""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collectors.collector import Collector
from collectors.replay import replay_batches
from pipeline.detect.ecmp import EcmpConfig
from pipeline.detect.engine import DetectorSet
from pipeline.detect.events import Event, latest_rows
from pipeline.topology import load_topology
from simulator.generator import generate
from simulator.scenario import load_scenario

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
KEY = ("link", "direction", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "vlan", "vni", "roce_qp")
SUMS = ("packets", "bytes", "ecn_ect", "ecn_ce", "cnp", "psn_gaps")
SAMPLE_RUNS = [("mixed", None), ("link_failure", None), ("allreduce_congestion", None), ("combo", None),
               ("combo", 77), ("allreduce_congestion", 21)]


@dataclass
class Run:
    flows: dict[str, np.ndarray]
    iterations: dict[str, np.ndarray]
    events: list[Event]
    truth: dict[str, Any]


def run(sample: str, seed: int | None, tmp_path: Path) -> Run:
    """Collector over the sample (or a capture generated from its scenario with `seed`), every table fed to the
    detectors as the embedded replay does."""
    if seed is None:
        pcap, truth_path = SAMPLES / f"{sample}.pcap", SAMPLES / f"{sample}.truth.json"
    else:
        outputs = generate(load_scenario(SAMPLES / f"{sample}.scenario.yaml"),
                           tmp_path / f"{sample}.pcap", seed, imbalance=EcmpConfig())
        pcap, truth_path = outputs.pcap, outputs.truth
    topology = load_topology(SAMPLES / f"{sample}.topology.yaml")
    detectors = DetectorSet(topology)
    tables: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
    events: list[Event] = []
    for records in Collector(topology).run(replay_batches([pcap], progress=False)):
        for table, columns in records.tables():
            tables[table].append(columns)
            events += detectors.update(table, columns)
    events += detectors.flush()
    merged = {table: {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
              for table, parts in tables.items()}
    return Run(merged["flows"], merged["iterations"], latest_rows(events), json.loads(truth_path.read_text()))


def _address(raw: bytes) -> str:
    address = ipaddress.IPv6Address(raw)
    return str(address.ipv4_mapped or address)


def flow_key(rows: dict[str, np.ndarray], i: int, names: tuple[str, ...] = KEY) -> tuple[object, ...]:
    return tuple(_address(rows[n][i]) if n.endswith("_ip") else rows[n][i] if rows[n].dtype == object
                 else int(rows[n][i]) for n in names)


def job_names(result: Run) -> dict[str, str]:
    """Truth job name -> the name DFI gave the same flows."""
    ours: dict[tuple[object, ...], str] = {}
    for i in range(len(result.flows["job"])):
        if result.flows["job"][i]:
            ours[flow_key(result.flows, i)] = str(result.flows["job"][i])
    names = {}
    for flow in result.truth["flows"]:
        key = tuple(flow[name] for name in KEY)
        if flow["job"] and key in ours:
            names[flow["job"]] = ours[key]
    return names


@pytest.mark.parametrize(("sample", "seed"), SAMPLE_RUNS)
def test_rows_cut_at_pauses_add_up_to_the_truth_and_iterations_match(
    tmp_path: Path, sample: str, seed: int | None
) -> None:
    result = run(sample, seed, tmp_path)
    rows = result.flows
    flows: dict[tuple[object, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS, 0))
    for i in range(len(rows["packets"])):
        flow = flows[flow_key(rows, i)]
        for name in SUMS:
            flow[name] += int(rows[name][i])
        first, last = int(rows["ts_start"][i].astype(np.int64)), int(rows["ts_end"][i].astype(np.int64))
        flow["first_ts_us"] = min(flow.get("first_ts_us", first), first)
        flow["last_ts_us"] = max(flow.get("last_ts_us", last), last)
    expected = {tuple(flow[name] for name in KEY): {name: flow[name] for name in (*SUMS, "first_ts_us", "last_ts_us")}
                for flow in result.truth["flows"]}
    assert dict(flows) == expected
    assert len(rows["packets"]) > len(expected)  # bursts are rows of their own

    names = job_names(result)
    assert sorted(names) == sorted(result.truth["jobs"])
    its = result.iterations
    for job, true in result.truth["jobs"].items():
        mine = np.flatnonzero(its["job"] == names[job])
        assert its["iteration"][mine].tolist() == list(range(len(true["iterations"])))
        got = its["allreduce_ms"][mine]
        want = np.array([it["allreduce_ms"] for it in true["iterations"]])
        assert np.all(np.abs(got - want) <= 0.05 * want)
        starts = its["ts"][mine].astype(np.int64)
        assert np.all(np.abs(starts - [it["start_us"] for it in true["iterations"]]) <= 0.05 * want * 1000)
        assert np.all(its["period_ms"][mine][1:] == pytest.approx(np.diff(starts) / 1000))


def test_the_stretched_job_of_the_congestion_sample_is_reported_slow_and_blames_the_congested_link(
    tmp_path: Path,
) -> None:
    result = run("allreduce_congestion", None, tmp_path)
    (congestion,) = [event for event in result.truth["events"] if event["kind"] == "congestion"]
    slow = [e for e in result.events if e["kind"] == "collective_slowdown"]
    assert [e["job"] for e in slow] == [job_names(result)["gpt-a"]]
    assert (slow[0]["link"], slow[0]["direction"]) == (congestion["link"], congestion["direction"])
    truth_ms = {it["iteration"]: it["allreduce_ms"] for it in result.truth["jobs"]["gpt-a"]["iterations"]}
    normal = min(truth_ms.values())
    for it in json.loads(slow[0]["details"])["iterations"]:
        assert truth_ms[it["iteration"]] > 1.5 * normal
        assert it["allreduce_ms"] == pytest.approx(truth_ms[it["iteration"]], rel=0.05)


@pytest.mark.parametrize(("sample", "seed"), [("combo", None), ("combo", 77), ("link_failure", None)])
def test_outages_show_as_holes_between_the_rows_of_dense_flows(tmp_path: Path, sample: str, seed: int | None) -> None:
    """The rows of flows whose packets come closer than the detectors' 5 ms silence leave the failed link empty
    from the truth's failure time on, even when outage and repair fall inside one export interval."""
    result = run(sample, seed, tmp_path)
    rows = result.flows
    start, end = rows["ts_start"].astype(np.int64), rows["ts_end"].astype(np.int64)
    packets = rows["packets"].astype(np.int64)
    dense = (packets < 2) | ((end - start) <= 5000 * (packets - 1))
    for failure in (t for t in result.truth["events"] if t["kind"] == "fast_recovery"):
        on_link = dense & (rows["link"] == failure["link"])
        before = on_link & (start <= failure["ts_us"])
        assert int(end[before].max()) == failure["ts_us"]
        after = start[on_link & (start > failure["ts_us"])]  # none if the link stayed down
        assert not len(after) or int(after.min()) > failure["ts_us"] + 5000


@pytest.mark.parametrize("sample", [
    "link_failure",
    "combo",
])
def test_fast_recovery_from_the_collector_rows_matches_the_truth(tmp_path: Path, sample: str) -> None:
    result = run(sample, None, tmp_path)
    found = [e for e in result.events if e["kind"] == "fast_recovery"]
    expected = [t for t in result.truth["events"] if t["kind"] == "fast_recovery"]
    assert [(e["link"], int(np.datetime64(e["ts"], "us").astype(np.int64))) for e in found] == [
        (t["link"], t["ts_us"]) for t in expected
    ]
    for event, true in zip(found, expected, strict=True):
        for field in ("local_convergence_ms", "remote_convergence_ms"):
            assert event[field] == pytest.approx(true[field], abs=0.05)
        for field in ("flows_affected", "flows_recovered", "packets_lost"):
            assert event[field] == true[field]
