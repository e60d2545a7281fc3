"""Fast recovery on captures generated here, not the committed samples: other fabrics (3 spines), other
seeds, other links and fault times (early, late, two links at once). The detectors fed the real collector's
rows must report exactly the truth's failures with the same numbers: with the rows all at the end of a capture
shorter than an export interval, and streamed as a live collector sends them (small batches, DFI running
every 50 ms, so rows of known flows leave as soon as the flow table closes them), each event out before the
capture ends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from collectors.collector import Collector, CollectorConfig
from collectors.pcapfile import open_capture
from collectors.replay import replay_batches
from pipeline.detect.ecmp import EcmpConfig
from pipeline.detect.engine import DetectorSet
from pipeline.detect.events import Event
from pipeline.topology import load_topology
from simulator.generator import generate
from simulator.scenario import load_scenario

SCENARIO = """
name: generated-failure
duration_ms: 400
seed: {seed}
capture: {{erspan_type: {erspan}, snaplen: 128, ts_resolution: ns}}
fabric: {{name: pod9, leaves: {leaves}, spines: {spines}, hosts_per_leaf: 4}}
traffic:
  - {{kind: allreduce, job: train, hosts: {hosts}, qps_per_pair: 2, period_ms: 25, burst_ms: 14, packet_gap_us: 150,
     payload: 4096, message_packets: 4, start_ms: 1}}
  - {{kind: bfd, interval_ms: 20}}
faults:
{faults}
"""
CASES = {
    "3-spines-mid": dict(seed=3, erspan=3, leaves=3, spines=3, hosts=6, faults=[
        ("leaf2-spine3", 101.1, 0.8, 3.9)]),
    "early": dict(seed=8, erspan=2, leaves=4, spines=2, hosts=8, faults=[("leaf1-spine1", 4.2, 1.1, 5.0)]),
    "late": dict(seed=12, erspan=2, leaves=4, spines=2, hosts=8, faults=[("leaf4-spine2", 176.3, 2.0, 7.5)]),
    "two-at-once": dict(seed=21, erspan=3, leaves=4, spines=3, hosts=8, faults=[
        ("leaf1-spine2", 77.4, 1.0, 4.0), ("leaf3-spine1", 77.4, 1.5, 6.0)]),
}


def detect(case: dict[str, object], tmp_path: Path, *, streamed: bool) -> tuple[list[Event], list[dict[str, object]]]:
    faults = "\n".join(
        f"  - {{kind: link_failure, link: {link}, at_ms: {at}, local_convergence_ms: {local}, "
        f"remote_convergence_ms: {remote}}}"
        for link, at, local, remote in case["faults"]  # type: ignore[attr-defined]
    )
    scenario_path = tmp_path / "generated.scenario.yaml"
    scenario_path.write_text(SCENARIO.format(**{**case, "faults": faults}))
    outputs = generate(load_scenario(scenario_path), tmp_path / "generated.pcap", imbalance=EcmpConfig())
    topology = load_topology(outputs.topology)
    detectors = DetectorSet(topology)
    events: list[Event] = []
    if streamed:
        collector = Collector(topology, CollectorConfig(active_timeout_s=0.05))
        with open_capture(outputs.pcap, batch_size=256) as capture:
            steps = list(collector.run(capture))
    else:
        steps = list(Collector(topology).run(replay_batches([outputs.pcap], progress=False)))
    for records in steps[:-1] if streamed else steps:  # streamed: found before the end of input, not at it
        for table, columns in records.tables():
            events += detectors.update(table, columns)
    if not streamed:
        events += detectors.flush()
    truth = json.loads(outputs.truth.read_text())
    return ([e for e in events if e["kind"] == "fast_recovery"],
            [t for t in truth["events"] if t["kind"] == "fast_recovery"])


@pytest.mark.parametrize("streamed", [False, True], ids=["at-end", "streamed"])
@pytest.mark.parametrize("name", list(CASES))
def test_generated_failures_match_the_truth(name: str, streamed: bool, tmp_path: Path) -> None:
    found, expected = detect(CASES[name], tmp_path, streamed=streamed)
    by_link = {str(e["link"]): e for e in found}
    assert sorted(by_link) == sorted(str(t["link"]) for t in expected), (found, expected)
    for want in expected:
        got = by_link[str(want["link"])]
        assert int(np.datetime64(got["ts"], "us").astype(np.int64)) == want["ts_us"]
        for field in ("local_convergence_ms", "remote_convergence_ms"):
            if want[field] is None:
                assert got[field] is None
            else:
                assert got[field] == pytest.approx(want[field], abs=0.05), field
        for field in ("flows_affected", "flows_recovered", "packets_lost"):
            assert got[field] == want[field], field
