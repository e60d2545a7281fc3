"""The ECMP detector over the real collector's link bins finds exactly the generator's ecmp_imbalance truth:
on every committed sample and on fresh captures with other seeds whose windows straddle a second boundary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collectors.collector import Collector
from collectors.replay import replay_batches
from pipeline.detect import EcmpDetector
from pipeline.detect.ecmp import EcmpConfig
from pipeline.topology import load_topology
from simulator.generator import generate
from simulator.scenario import load_scenario

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
NAMES = ("mixed", "allreduce_congestion", "link_failure", "combo")
SHARE_TOLERANCE = 0.01
# (sample scenario, seed, new start): 200 ms before a whole second, so events can span two windows.
FRESH = (("combo", 7, "2026-01-15T12:59:59.800Z"), ("link_failure", 11, "2026-01-15T11:59:59.900Z"))


def detected(pcap: Path, topology: Path) -> list[dict[str, Any]]:
    detector = EcmpDetector(load_topology(topology))
    events: list[dict[str, Any]] = []
    for records in Collector(load_topology(topology)).run(replay_batches([pcap], progress=False)):
        events += detector.update(records.link_bins)
    return [event for event in events + detector.flush() if event["state"] == "closed"]


def expected(truth: Path) -> list[dict[str, Any]]:
    return [e for e in json.loads(truth.read_text())["events"] if e["kind"] == "ecmp_imbalance"]


def assert_same(found: list[dict[str, Any]], truth: list[dict[str, Any]]) -> None:
    def us(value: object) -> int:
        return int(np.datetime64(value, "us").astype(np.int64))

    found = sorted(found, key=lambda e: (us(e["ts"]), e["device"]))
    truth = sorted(truth, key=lambda e: (e["ts_us"], e["leaf"]))
    assert [(e["device"], us(e["ts"]), us(e["ts_end"])) for e in found] == \
        [(t["leaf"], t["ts_us"], t["ts_end_us"]) for t in truth]
    for event, true in zip(found, truth, strict=True):
        details = json.loads(str(event["details"]))
        assert details["shares"] == pytest.approx(true["shares"], abs=SHARE_TOLERANCE)
        assert details["peak_shares"] == pytest.approx(true["peak_shares"], abs=SHARE_TOLERANCE)
        assert event["value"] == pytest.approx(true["peak_deviation"], abs=SHARE_TOLERANCE)
        assert details["windows"] == true["windows"]


@pytest.mark.parametrize("name", NAMES)
def test_sample_imbalance_matches_the_truth(name: str) -> None:
    truth = expected(SAMPLES / f"{name}.truth.json")
    assert_same(detected(SAMPLES / f"{name}.pcap", SAMPLES / f"{name}.topology.yaml"), truth)
    injected = [t["leaf"] for t in truth if t["injected"]]
    assert injected == (["leaf1"] if name == "combo" else [])


@pytest.mark.parametrize(("name", "seed", "start"), FRESH)
def test_fresh_capture_imbalance_matches_the_truth(tmp_path: Path, name: str, seed: int, start: str) -> None:
    text = (SAMPLES / f"{name}.scenario.yaml").read_text()
    scenario = tmp_path / f"{name}.scenario.yaml"
    scenario.write_text("\n".join(f'start: "{start}"' if line.startswith("start:") else line
                                  for line in text.splitlines()))
    outputs = generate(load_scenario(scenario), tmp_path / f"{name}.pcap", seed, imbalance=EcmpConfig())
    truth = expected(outputs.truth)
    assert any(t["windows"] == 2 for t in truth) and any(t["windows"] == 1 for t in truth)
    assert_same(detected(outputs.pcap, outputs.topology), truth)
