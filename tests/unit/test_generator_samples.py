"""The committed samples are exactly what the generator makes from their scenarios, and each shows
what it is there for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.detect.ecmp import EcmpConfig
from simulator.generator import Outputs, generate
from simulator.scenario import load_scenario

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
NAMES = ("mixed", "allreduce_congestion", "link_failure", "combo")
MAX_PCAP_BYTES = 5_000_000


@pytest.mark.parametrize("name", NAMES)
def test_sample_matches_fresh_generation(tmp_path: Path, name: str) -> None:
    fresh = generate(load_scenario(SAMPLES / f"{name}.scenario.yaml"), tmp_path / f"{name}.pcap",
                     imbalance=EcmpConfig())
    committed = Outputs.beside(SAMPLES / f"{name}.pcap")
    for ours, theirs in zip((fresh.pcap, fresh.counters, fresh.truth, fresh.topology),
                            (committed.pcap, committed.counters, committed.truth, committed.topology), strict=True):
        assert ours.read_bytes() == theirs.read_bytes(), f"{theirs} is stale: regenerate it (samples/README.md)"
    assert committed.pcap.stat().st_size <= MAX_PCAP_BYTES


def truth(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.truth.json").read_text())


def test_mixed_has_every_app_and_no_events() -> None:
    mixed = truth("mixed")
    assert set(mixed["apps"]) == {"rocev2", "torch-c10d", "nvme-tcp", "nfs", "tls", "ssh", "bgp", "bfd", "lldp",
                                  "arp", "dns", "ntp", "ptp", "vxlan", "icmp", "unknown"}
    assert mixed["events"] == [] and mixed["ecn_ce"] == 0
    assert any(":" in f["src_ip"] and f["app"] == "nvme-tcp" for f in mixed["flows"])
    assert any(f["vlan"] for f in mixed["flows"])
    assert {f["traffic_class"] for f in mixed["flows"]} == {"collective", "p2p", "bulk", "interactive", "control",
                                                            "other"}


def test_allreduce_congestion_stretches_one_job() -> None:
    sample = truth("allreduce_congestion")
    (episode,) = [e for e in sample["events"] if e["kind"] != "ecmp_imbalance"]  # few flows: the hash skews
    assert episode["kind"] == "congestion" and episode["jobs"] == ["gpt-a"]
    assert episode["ce"] > 0 and episode["cnp"] > 0 and episode["pfc_pauses"] > 0
    times = {job: [i["allreduce_ms"] for i in v["iterations"]] for job, v in sample["jobs"].items()}
    assert max(times["gpt-a"]) > 1.5 * min(times["gpt-a"])
    assert max(times["gpt-b"]) < 1.05 * min(times["gpt-b"])


def test_link_failure_converges_locally_then_remotely() -> None:
    recovery = next(e for e in truth("link_failure")["events"] if e["kind"] == "fast_recovery")
    assert recovery["flows_affected"] >= 4 and recovery["flows_recovered"] == recovery["flows_affected"]
    assert 1.4 <= recovery["local_convergence_ms"] < 2.4
    assert 6.2 <= recovery["remote_convergence_ms"] < 7.2
    assert recovery["packets_lost"] > 0


def test_combo_has_every_event_kind() -> None:
    sample = truth("combo")
    kinds = {e["kind"] for e in sample["events"]}
    assert kinds == {"congestion", "fast_recovery", "link_down", "link_up", "link_flap", "ecmp_imbalance"}
    assert sum(f["psn_gaps"] for f in sample["flows"]) > 0  # flows back on their spine after the link recovers
    assert any(f["app_detail"] == "ckpt-upload.blob.example.net" for f in sample["flows"])
