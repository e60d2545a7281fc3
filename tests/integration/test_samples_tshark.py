"""Independent check of the samples with Debian tshark: per-app packet counts, ECN CE and CNP counts
and the ERSPAN session ids it dissects equal the ground truth."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from requirements import require

from pipeline.detect.ecmp import EcmpConfig
from simulator.generator import generate
from simulator.scenario import load_scenario

pytestmark = pytest.mark.tshark

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FIELDS = ("erspan.spanid", "frame.protocols", "tcp.port", "udp.port", "infiniband.bth.opcode", "ip.dsfield.ecn",
          "macc.opcode")
# Each mirrored copy is seen twice when it crosses two links: tshark must not treat copies as retransmissions.
OPTIONS = ("-o", "tcp.analyze_sequence_numbers:FALSE", "-o", "tcp.desegment_tcp_streams:FALSE",
           "-d", "udp.port==4791,infiniband")
TCP_APPS = {4420: "nvme-tcp", 2049: "nfs", 443: "tls", 29500: "torch-c10d", 22: "ssh", 179: "bgp"}
UDP_APPS = {53: "dns", 123: "ntp", 319: "ptp", 320: "ptp", 3784: "bfd"}
CNP_OPCODE = 0x81
PFC_OPCODE = 0x0101


def classify(protocols: list[str], tcp_ports: set[int], udp_ports: set[int], opcode: str, macc: str) -> str:
    """The app of one packet from tshark's dissection alone."""
    for name in ("lldp", "arp", "vxlan"):
        if name in protocols:
            return name
    if macc and int(macc, 0) == PFC_OPCODE:
        return "pfc"
    if "infiniband" in protocols:
        return "rocev2-cnp" if int(opcode, 0) == CNP_OPCODE else "rocev2"
    for ports, table in ((tcp_ports, TCP_APPS), (udp_ports, UDP_APPS)):
        for port, app in table.items():
            if port in ports:
                return app
    if "icmp" in protocols or "icmpv6" in protocols:
        return "icmp"
    return "unknown"


def tshark_view(pcap: Path) -> tuple[Counter[str], int, int, set[int]]:
    """(packets per app, CE-marked monitored packets, CNPs, ERSPAN session ids) as tshark sees them."""
    command = ["tshark", "-n", "-r", str(pcap), *OPTIONS, "-T", "fields", "-E", "separator=\t", "-E",
               "occurrence=a", "-E", "aggregator=,"]
    for field in FIELDS:
        command += ["-e", field]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    apps: Counter[str] = Counter()
    ce = cnp = 0
    sessions: set[int] = set()
    for line in output.splitlines():
        spanid, protocols, tcp, udp, opcode, ecn, macc = line.split("\t")
        sessions.add(int(spanid))
        layers = protocols.split(":")
        tcp_ports = {int(p) for p in tcp.split(",") if p}
        udp_ports = {int(p) for p in udp.split(",") if p}
        app = classify(layers, tcp_ports, udp_ports, opcode, macc)
        apps[app] += 1
        cnp += app == "rocev2-cnp"
        marks = ecn.split(",")
        ce += len(marks) > 1 and marks[1] == "3"  # [0] is the ERSPAN outer header, [1] the monitored frame
    return apps, ce, cnp, sessions


def check(pcap: Path, truth_path: Path) -> None:
    truth = json.loads(truth_path.read_text())
    apps, ce, cnp, sessions = tshark_view(pcap)
    assert sum(apps.values()) == truth["packets"]
    assert dict(apps) == truth["apps"]
    assert ce == truth["ecn_ce"] == sum(f["ecn_ce"] for f in truth["flows"])
    assert cnp == truth["cnp"] == sum(f["cnp"] for f in truth["flows"])
    assert sessions == set(truth["erspan_sessions"])


@pytest.fixture(autouse=True)
def _tshark() -> None:
    require(shutil.which("tshark") is not None, "tshark is required (Debian package tshark; `make test` installs it)",
            everywhere=True)


@pytest.mark.parametrize("name", ["mixed", "allreduce_congestion", "link_failure", "combo"])
def test_sample_agrees_with_tshark(name: str) -> None:
    check(SAMPLES / f"{name}.pcap", SAMPLES / f"{name}.truth.json")


def test_fresh_generation_agrees_with_tshark(tmp_path: Path) -> None:
    """Another seed and a shorter, differently captured run than the committed combo sample."""
    text = (SAMPLES / "combo.scenario.yaml").read_text()
    text = text.replace("duration_ms: 400", "duration_ms: 150").replace("erspan_type: 3", "erspan_type: 2")
    text = text.replace("ts_resolution: us", "ts_resolution: ns").replace("start_ms: 60, end_ms: 180",
                                                                          "start_ms: 20, end_ms: 120")
    scenario_path = tmp_path / "fresh.scenario.yaml"
    scenario_path.write_text(text.replace("at_ms: 123.4, recover_ms: 250", "at_ms: 80, recover_ms: 140")
                             .replace("down_ms: 320.5, up_ms: 345", "down_ms: 100, up_ms: 130"))
    outputs = generate(load_scenario(scenario_path), tmp_path / "fresh.pcap", seed=99, imbalance=EcmpConfig())
    truth = json.loads(outputs.truth.read_text())
    assert truth["seed"] == 99 and truth["erspan_type"] == 2 and truth["ecn_ce"] > 0
    check(outputs.pcap, outputs.truth)
