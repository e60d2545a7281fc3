"""A short soak-like scenario: jobs that stop and start, failures repaired or not, a flap and congestion
over many iterations; the truth lists one incident per fault, computed from the scenario, and the
generation is deterministic."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.detect.ecmp import EcmpConfig
from simulator.generator import Outputs, generate
from simulator.scenario import load_scenario

# job-a's bursts start at 100 + 200k ms and last 15 ms; job-b's at 11000 + 200k
SOAK = """\
name: short-soak
duration_ms: 20000
seed: 7
incident_truth: true
capture: {erspan_type: 3, snaplen: 128, ts_resolution: ns}
fabric: {leaves: 2, spines: 2, hosts_per_leaf: 2}
traffic:
  - {kind: allreduce, job: job-a, hosts: 4, qps_per_pair: 2, period_ms: 200, burst_ms: 15, packet_gap_us: 1000,
     message_packets: 15, start_ms: 100, end_ms: 9000}
  - {kind: allreduce, job: job-b, hosts: 4, qps_per_pair: 2, period_ms: 200, burst_ms: 15, packet_gap_us: 1000,
     message_packets: 15, start_ms: 11000}
  - {kind: bfd, interval_ms: 200}
faults:
  - {kind: link_failure, link: leaf1-spine1, at_ms: 2105, recover_ms: 2285}
  - {kind: link_failure, link: leaf2-spine2, at_ms: 4119, recover_ms: 4519}
  - {kind: congestion, link: leaf1-spine2, direction: down, start_ms: 5000, end_ms: 7000, stretch: 2.0}
  - {kind: link_flap, link: leaf2-spine1, down_ms: 13005, up_ms: 13045}
  - {kind: congestion, link: leaf2-spine1, direction: down, start_ms: 15000, end_ms: 17000, stretch: 2.0}
  - {kind: link_failure, link: leaf1-spine2, at_ms: 18005}
"""


def _generate(tmp_path: Path, name: str) -> Outputs:
    path = tmp_path / f"{name}.scenario.yaml"
    path.write_text(SOAK)
    return generate(load_scenario(path), tmp_path / f"{name}.pcap", imbalance=EcmpConfig())


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> tuple[Outputs, dict]:
    outputs = _generate(tmp_path_factory.mktemp("soak"), "short-soak")
    return outputs, json.loads(outputs.truth.read_text())


def test_one_incident_per_fault(soak: tuple[Outputs, dict]) -> None:
    scenario = load_scenario(soak[0].pcap.with_suffix(".scenario.yaml"))
    faults = Counter(f.kind for f in scenario.faults)
    outages = [f for f in scenario.faults if f.kind in ("link_failure", "link_flap")]
    repaired = [f for f in outages if f.params.get("recover_ms", f.params.get("up_ms", -1)) >= 0]
    kinds = Counter(e["kind"] for e in soak[1]["events"] if e["kind"] != "ecmp_imbalance")
    assert kinds == {
        "fast_recovery": len(outages), "link_down": len(outages), "link_up": len(repaired),
        "link_flap": faults["link_flap"], "congestion": faults["congestion"],
        "collective_slowdown": faults["congestion"],  # each episode falls inside a job that crosses it
    }


def test_jobs_stop_and_start(soak: tuple[Outputs, dict]) -> None:
    start_us = soak[1]["start_us"]
    jobs = soak[1]["jobs"]
    a = [(i["start_us"] - start_us) / 1000 for i in jobs["job-a"]["iterations"]]
    b = [(i["start_us"] - start_us) / 1000 for i in jobs["job-b"]["iterations"]]
    assert 100 <= a[0] < 102 and 8900 <= a[-1] < 9000  # no iteration starts after end_ms: a quiet gap follows
    assert 11000 <= b[0] < 11002 and b[-1] >= 19800


def test_interrupted_flows_apart_from_those_resumed_after_idle(soak: tuple[Outputs, dict]) -> None:
    recoveries = {e["link"]: e for e in soak[1]["events"] if e["kind"] == "fast_recovery"}
    mid_burst, after_burst = recoveries["leaf1-spine1"], recoveries["leaf2-spine2"]
    assert mid_burst["flows_interrupted"] > 0 and not mid_burst["resumed_after_idle"]
    configured = mid_burst["configured_remote_convergence_ms"]  # only flows into leaf1 crossed spine1
    assert configured <= mid_burst["remote_convergence_ms"] < configured + 1.0 + 0.1  # + packet spacing (1 ms)
    assert mid_burst["packets_lost"] > 0
    # the failure came 4 ms after the burst: its flows were idle, and took another spine on the next burst
    assert after_burst["flows_interrupted"] == 0 and after_burst["resumed_after_idle"]
    assert after_burst["convergence_ms"] is None and after_burst["packets_lost"] == 0
    assert all(f["back_ms"] > 150 for f in after_burst["resumed_after_idle"])


def test_slowdown_lists_the_stretched_iterations(soak: tuple[Outputs, dict]) -> None:
    slowdowns = [e for e in soak[1]["events"] if e["kind"] == "collective_slowdown"]
    assert [s["job"] for s in slowdowns] == ["job-a", "job-b"]
    for slowdown in slowdowns:
        assert len(slowdown["iterations"]) == 10  # 2 s of congestion, one iteration every 200 ms
        assert slowdown["peak_ratio"] > 1.5


def test_generation_is_deterministic(soak: tuple[Outputs, dict], tmp_path: Path) -> None:
    again = _generate(tmp_path, "short-soak")
    for ours, theirs in zip((soak[0].pcap, soak[0].counters, soak[0].truth),
                            (again.pcap, again.counters, again.truth), strict=True):
        assert hashlib.sha256(ours.read_bytes()).digest() == hashlib.sha256(theirs.read_bytes()).digest()
