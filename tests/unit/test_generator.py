"""Scenario generator: determinism per seed, and the pcap, counters and truth agree with each other."""

from __future__ import annotations

import hashlib
import json
import struct
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from pipeline.detect.ecmp import EcmpConfig
from pipeline.records import column_names
from pipeline.topology import load_topology
from simulator.generator import Outputs, generate
from simulator.pcap import ipv4_checksums
from simulator.scenario import load_scenario

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

SMALL = """\
name: small
duration_ms: 60
seed: 3
capture: {{erspan_type: {erspan}, snaplen: {snaplen}, ts_resolution: {resolution}}}
fabric: {{leaves: 3, spines: 2, hosts_per_leaf: 3}}
traffic:
  - {{kind: allreduce, job: j1, hosts: 6, qps_per_pair: 2, period_ms: 20, burst_ms: 12, packet_gap_us: 100}}
  - {{kind: p2p, hosts: 3, period_ms: 10, burst_ms: 3, packet_gap_us: 150}}
  - {{kind: tls, flows: 1, exchanges_per_s: 300}}
  - {{kind: nvme_tcp, flows: 1, exchanges_per_s: 300, ipv6: true}}
  - {{kind: vxlan, flows: 1, exchanges_per_s: 200}}
  - {{kind: unknown, flows: 1, exchanges_per_s: 200, vlan: 42}}
  - {{kind: bfd, interval_ms: 5}}
  - {{kind: lldp, interval_ms: 20}}
  - {{kind: arp, interval_ms: 20}}
faults:
  - {{kind: congestion, link: leaf2-spine1, direction: down, start_ms: 5, end_ms: 50, peak_ce_ratio: 0.8}}
  - {{kind: link_failure, link: leaf1-spine2, at_ms: 25, local_convergence_ms: 0.5,
     remote_convergence_ms: 2}}
  - {{kind: ecmp_imbalance, leaf: leaf3, spine: spine2, share: 0.9}}
"""


def make(tmp_path: Path, name: str, seed: int | None = None, *, erspan: int = 3, snaplen: int = 128,
         resolution: str = "ns") -> Outputs:
    scenario_path = tmp_path / f"{name}.scenario.yaml"
    scenario_path.write_text(SMALL.format(erspan=erspan, snaplen=snaplen, resolution=resolution))
    return generate(load_scenario(scenario_path), tmp_path / f"{name}.pcap", seed, imbalance=EcmpConfig())


def digest(outputs: Outputs) -> list[str]:
    return [hashlib.sha256(path.read_bytes()).hexdigest()
            for path in (outputs.pcap, outputs.counters, outputs.truth, outputs.topology)]


def read_pcap(path: Path) -> tuple[int, int, list[tuple[int, int, int, bytes]]]:
    """(magic, snaplen, [(ts_sec, ts_frac, orig_len, captured bytes)])."""
    data = path.read_bytes()
    magic, _, _, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert linktype == 1
    records, at = [], 24
    while at < len(data):
        sec, frac, caplen, orig = struct.unpack_from("<IIII", data, at)
        records.append((sec, frac, orig, data[at + 16: at + 16 + caplen]))
        at += 16 + caplen
    return magic, snaplen, records


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    for run in ("a", "b", "c"):
        (tmp_path / run).mkdir()
    first = digest(make(tmp_path / "a", "run", 7))
    second = digest(make(tmp_path / "b", "run", 7))
    other = digest(make(tmp_path / "c", "run", 8))
    assert first == second
    assert first[0] != other[0] and first[2] != other[2]
    assert first[3] == other[3]  # the fabric, hence the topology, does not depend on the seed


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Outputs, dict]:
    outputs = make(tmp_path_factory.mktemp("small"), "small")
    return outputs, json.loads(outputs.truth.read_text())


def test_truth_totals_match_pcap(small: tuple[Outputs, dict]) -> None:
    outputs, truth = small
    magic, snaplen, records = read_pcap(outputs.pcap)
    assert magic == 0xA1B23C4D and snaplen == 128
    assert truth["packets"] == len(records) == outputs.packets
    assert sum(f["packets"] for f in truth["flows"]) == len(records)
    assert sum(truth["apps"].values()) == len(records)
    assert all(len(frame) == min(orig, 128) for _, _, orig, frame in records)
    outer = 14 + 20 + 8 + 12
    assert sum(f["bytes"] for f in truth["flows"]) == sum(orig - outer for _, _, orig, _ in records)
    assert all(orig - outer >= 60 for _, _, orig, _ in records)  # short frames padded to the Ethernet minimum
    stamps = [sec * 10**9 + frac for sec, frac, _, _ in records]
    assert stamps == sorted(stamps)


def test_ip_checksums_valid(small: tuple[Outputs, dict]) -> None:
    import numpy as np

    _, _, records = read_pcap(small[0].pcap)
    outer = np.array([list(frame[14:34]) for _, _, _, frame in records], dtype=np.uint8)
    assert (ipv4_checksums(outer) == 0).all()  # a valid header sums to 0xFFFF, so its checksum is 0
    inner = [frame[54 + 14: 54 + 34] for _, _, _, frame in records if frame[54 + 12: 54 + 14] == b"\x08\x00"]
    assert (ipv4_checksums(np.array([list(h) for h in inner], dtype=np.uint8)) == 0).all()


def test_every_session_and_label_present(small: tuple[Outputs, dict]) -> None:
    _, truth = small
    assert truth["erspan_sessions"] == [11, 12, 21, 22, 31, 32]
    assert {"rocev2", "rocev2-cnp", "tls", "nvme-tcp", "vxlan", "unknown", "bfd", "lldp", "arp", "pfc"} \
        <= set(truth["apps"])
    tls = [f for f in truth["flows"] if f["app"] == "tls" and f["dst_port"] == 443]
    assert tls and all(f["app_detail"] == "checkpoints.storage.example.com" for f in tls)
    vxlan = [f for f in truth["flows"] if f["app"] == "vxlan"]
    assert vxlan and all(f["vni"] == 5001 and f["app_detail"] == "inner=http" for f in vxlan)
    # tenant flows keyed by the inner 5-tuple, the VTEPs (fabric hosts) kept, direction from their path
    assert all(f["proto"] == 6 and 80 in (f["src_port"], f["dst_port"]) and f["outer_src_ip"].startswith("10.0.")
               and f["direction"] in ("up", "down") for f in vxlan)
    assert all("outer_src_ip" not in f for f in truth["flows"] if f["app"] != "vxlan")
    assert {f["direction"] for f in truth["flows"] if f["app"] in ("bfd", "lldp", "arp", "pfc")} == {"unknown"}
    assert {f["direction"] for f in truth["flows"] if f["app"] == "rocev2"} == {"up", "down"}
    assert all(f["vlan"] == 42 for f in truth["flows"] if f["app"] == "unknown")


def test_fault_effects_in_truth(small: tuple[Outputs, dict]) -> None:
    _, truth = small
    kinds = Counter(e["kind"] for e in truth["events"] if e["kind"] != "ecmp_imbalance")  # the test below
    assert kinds == {"congestion": 1, "fast_recovery": 1, "link_down": 1}
    congestion = next(e for e in truth["events"] if e["kind"] == "congestion")
    assert congestion["ce"] > 0 and congestion["cnp"] > 0 and congestion["pfc_pauses"] > 0
    assert 0 < congestion["peak_ce_ratio"] <= 1
    assert congestion["ts_us"] <= congestion["ts_end_us"]
    assert truth["ecn_ce"] >= congestion["ce"]
    recovery = next(e for e in truth["events"] if e["kind"] == "fast_recovery")
    assert recovery["flows_affected"] >= recovery["flows_recovered"] > 0
    assert recovery["local_convergence_ms"] >= 0.5 and recovery["remote_convergence_ms"] >= 2
    assert recovery["packets_lost"] > 0


def test_ecmp_truth_follows_the_up_bytes_of_the_flow_rows(small: tuple[Outputs, dict]) -> None:
    """The 60 ms capture lies in one 1 s window, so a leaf is imbalanced exactly when the shares of its
    uplinks' `up` bytes in the flow rows meet the definition (2+ uplinks in use, 1 MB, 0.15 off even)."""
    _, truth = small
    up: dict[str, Counter[str]] = defaultdict(Counter)
    for flow in truth["flows"]:
        if flow["direction"] == "up":
            up[flow["link"].split("-")[0]][flow["link"]] += flow["bytes"]
    expected = {}
    for leaf, sizes in up.items():
        total = sum(sizes.values())
        shares = {link: size / total for link, size in sizes.items() if size}
        if len(shares) >= 2 and total >= 1_000_000 and max(abs(s - 1 / len(shares)) for s in shares.values()) > 0.15:
            expected[leaf] = shares
    events = {e["leaf"]: e for e in truth["events"] if e["kind"] == "ecmp_imbalance"}
    assert expected and events.keys() == expected.keys()
    for leaf, event in events.items():
        assert event["shares"] == pytest.approx(expected[leaf], abs=1e-4)
        assert (event["windows"], event["ts_end_us"] - event["ts_us"]) == (1, 1_000_000)
        injected = leaf == "leaf3"
        assert (event["injected"], event["configured_share"]) == (injected, 0.9 if injected else None)


def test_counters_cumulative_and_consistent(small: tuple[Outputs, dict]) -> None:
    outputs, truth = small
    rows = [json.loads(line) for line in outputs.counters.read_text().splitlines()]
    assert all(list(row) == column_names("counters") for row in rows)
    by_port: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        by_port.setdefault((row["device"], row["ifname"]), []).append(row)
    assert len(by_port) == 2 * 6
    cumulative = ("in_octets", "out_octets", "in_pkts", "out_pkts", "pfc_rx_pause", "pfc_tx_pause", "ecn_marked")
    for series in by_port.values():
        for name in cumulative:
            values = [row[name] for row in series]
            assert values == sorted(values)
    delta = {name: sum(s[-1][name] - s[0][name] for s in by_port.values()) for name in cumulative}
    total_bytes = sum(f["bytes"] for f in truth["flows"])
    assert delta["out_octets"] == delta["in_octets"] == total_bytes
    assert delta["out_pkts"] == delta["in_pkts"] == truth["packets"]
    congestion = next(e for e in truth["events"] if e["kind"] == "congestion")
    assert delta["pfc_tx_pause"] == delta["pfc_rx_pause"] == congestion["pfc_pauses"] == truth["apps"]["pfc"]
    assert delta["ecn_marked"] == congestion["ce"]
    failed = [(row["ts"], row["device"], row["oper_up"]) for row in rows if row["link"] == "leaf1-spine2"]
    assert failed == [("2026-01-15T10:00:00.000000Z", "leaf1", 1), ("2026-01-15T10:00:00.000000Z", "spine2", 1),
                      ("2026-01-15T10:00:00.100000Z", "leaf1", 0), ("2026-01-15T10:00:00.100000Z", "spine2", 0)]


def test_derived_topology_equals_sample(tmp_path: Path) -> None:
    scenario = load_scenario(SAMPLES / "mixed.scenario.yaml")
    from simulator.fabric import Fabric

    derived = Fabric(scenario.fabric).write_topology(tmp_path / "derived.yaml")
    sample = load_topology(SAMPLES / "topology.yaml")
    for name in ("fabric", "speed_gbps", "spines", "leaves", "links", "erspan_sessions", "vlans", "interfaces",
                 "sflow_ports", "counter_ports"):
        assert getattr(derived, name) == getattr(sample, name), name


def test_cli_writes_the_four_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fabricscope.cli import main

    scenario = tmp_path / "cli.scenario.yaml"
    scenario.write_text(SMALL.format(erspan=2, snaplen=0, resolution="us"))
    code = main(["simulate", "--scenario", str(scenario), "--out", str(tmp_path / "out" / "cli.pcap"), "--seed", "4"])
    assert code == 0
    names = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert names == ["cli.counters.jsonl", "cli.pcap", "cli.topology.yaml", "cli.truth.json"]
    truth = json.loads((tmp_path / "out" / "cli.truth.json").read_text())
    assert (truth["seed"], truth["erspan_type"], truth["snaplen"], truth["ts_resolution"]) == (4, 2, 0, "us")
    magic, _, records = read_pcap(tmp_path / "out" / "cli.pcap")
    assert magic == 0xA1B2C3D4 and len(records) == truth["packets"]
    assert all(len(frame) == orig for _, _, orig, frame in records)  # snaplen 0: full frames
    assert f"{truth['packets']} packets" in capsys.readouterr().out
