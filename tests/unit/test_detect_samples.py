"""The committed sample captures through the real collector into the detectors, against their ground truth.

Covers what the samples can show today: the link_failure sample's fast recovery (exact numbers) and the
congestion samples' episodes (window and link direction). Other kinds are not checked here: the
combo sample's failures last less than one flow export interval and need rows cut at the outage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from collectors.collector import Collector
from collectors.replay import replay_batches
from pipeline.detect import CongestionDetector, FastRecoveryDetector
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def run(name: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Events of the fast-recovery and congestion detectors on a sample, and the sample's truth events."""
    topology = load_topology(SAMPLES / f"{name}.topology.yaml")
    recovery, congestion = FastRecoveryDetector(), CongestionDetector()
    events: list[dict[str, object]] = []
    for records in Collector(topology).run(replay_batches([SAMPLES / f"{name}.pcap"], progress=False)):
        congestion.observe_flows(records.flows)
        events += recovery.update(records.flows) + congestion.update(records.link_bins)
    events += recovery.flush() + congestion.flush()
    truth = json.loads((SAMPLES / f"{name}.truth.json").read_text())["events"]
    return events, truth


def us(value: object) -> int:
    return int(np.datetime64(value, "us").astype(np.int64))


def test_link_failure_sample_fast_recovery_matches_the_truth() -> None:
    events, truth = run("link_failure")
    found = [e for e in events if e["kind"] == "fast_recovery"]
    expected = [t for t in truth if t["kind"] == "fast_recovery"]
    assert len(found) == len(expected) == 1
    event, true = found[0], expected[0]
    assert event["link"] == true["link"] and us(event["ts"]) == true["ts_us"]
    for field in ("local_convergence_ms", "remote_convergence_ms", "convergence_ms"):
        assert event[field] == pytest.approx(true[field], abs=0.05)
    for field in ("flows_affected", "flows_recovered", "packets_lost"):
        assert event[field] == true[field]


@pytest.mark.parametrize("name", ["allreduce_congestion", "combo"])
def test_congestion_samples_episodes_match_the_truth(name: str) -> None:
    events, truth = run(name)
    found = [e for e in events if e["kind"] == "congestion"]
    expected = [t for t in truth if t["kind"] == "congestion"]
    assert [(e["link"], e["direction"]) for e in found] == [(t["link"], t["direction"]) for t in expected]
    for event, true in zip(found, expected, strict=True):
        assert abs(us(event["ts"]) - true["ts_us"]) <= 50_000
        assert abs(us(event["ts_end"]) - true["ts_end_us"]) <= 50_000
        assert event["value"] == pytest.approx(true["peak_ce_ratio"], abs=1e-3)
        assert json.loads(str(event["details"]))["ce"] == true["ce"]
    assert not [e for e in events if e["kind"] == "pfc_storm"]
    if name == "allreduce_congestion":
        assert not [e for e in events if e["kind"] == "fast_recovery"]
