"""Wireshark's second opinion through the real collector and tshark: flows our DPI leaves `unknown` get
`wireshark:<protocol>` in their later rows, flows DPI knows keep their rows, the sampler keeps to its rate,
a full queue drops and counts, and without tshark the collector runs as before."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from requirements import require
from scapy.asn1.asn1 import ASN1_OID
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.modbus import ModbusADURequest, ModbusPDU03ReadHoldingRegistersRequest
from scapy.contrib.mqtt import MQTT, MQTTConnect
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.radius import Radius
from scapy.layers.snmp import SNMP, SNMPget, SNMPvarbind
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from collectors.collector import Collector, CollectorConfig
from collectors.decode import Decoder
from collectors.dpi import classify
from collectors.flows import FlowTable
from collectors.packets import PacketBatch
from collectors.replay import replay_batches
from collectors.second_opinion import SecondOpinion, SecondOpinionConfig, best_answer, highest_layer
from fabricscope.cli import build_parser
from fabricscope.config import load_config
from fabricscope.second_opinion import second_opinion_for
from pipeline.errors import InputError
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
T0 = 1_700_000_000 * 10**9
SECOND = 10**9
SIP = (b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776\r\n"
       b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: a84b4c76e66710\r\n"
       b"CSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
# (REGISTER, not OPTIONS: our DPI takes "OPTIONS sip:…" for an HTTP request line)
# the protocol each flow carries (the truth) → its L4 part; none of them is in our DPI's signatures or ports
UNKNOWN_TO_US: dict[str, Packet] = {
    "sip": UDP(sport=5060, dport=5060) / Raw(SIP),
    "radius": UDP(sport=40000, dport=1812) / Radius(code=1, id=5),
    "snmp": UDP(sport=40001, dport=161) / SNMP(community="public", PDU=SNMPget(
        varbindlist=[SNMPvarbind(oid=ASN1_OID("1.3.6.1.2.1.1.1.0"))])),
    "mqtt": TCP(sport=40002, dport=1883, flags="PA", seq=1, ack=1) / MQTT() / MQTTConnect(clientId=b"fabric"),
    "modbus": TCP(sport=40003, dport=502, flags="PA", seq=1, ack=1) / ModbusADURequest()
    / ModbusPDU03ReadHoldingRegistersRequest(),
}
KNOWN = UDP(sport=40100, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.com"))  # DPI: dns
NOBODY = UDP(sport=40200, dport=9999) / Raw(b"opaque bytes nobody names")  # Wireshark: udp:data


def mirrored(l4: Packet, host: int) -> bytes:
    """`l4` from 10.0.1.5 to 10.0.2.<host>, mirrored by ERSPAN session 11 (leaf1-spine1 in the sample topology)."""
    inner = Ether() / IP(src="10.0.1.5", dst=f"10.0.2.{host}") / l4
    return bytes(Ether() / IP(src="10.254.0.1", dst="198.51.100.10") / GRE(seqnum_present=1)
                 / ERSPAN_II(session_id=11) / inner)


def batch_of(frames: list[bytes], ts_ns: np.ndarray) -> PacketBatch:
    lengths = np.array([len(frame) for frame in frames], dtype=np.uint32)
    return PacketBatch(data=np.frombuffer(b"".join(frames), dtype=np.uint8),
                       offset=np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64), caplen=lengths, wirelen=lengths,
                       ts_ns=ts_ns.astype(np.int64), interface=np.zeros(len(frames), np.uint16), interfaces=("",))


def capture(path: Path, flows: list[tuple[bytes, list[int]]]) -> Path:
    """A pcap of each flow's frame sent at its times (ns), in time order."""
    packets = []
    for frame, times in flows:
        for ts in times:
            packet = Ether(frame)
            packet.time = ts / 1e9
            packets.append(packet)
    wrpcap(str(path), sorted(packets, key=lambda packet: float(packet.time)))
    return path


def replay(path: Path, opinion: SecondOpinionConfig | None) -> tuple[dict[str, np.ndarray], Collector]:
    collector = Collector(load_topology(SAMPLES / "topology.yaml"),
                          CollectorConfig(second_opinion=opinion, wait_for_opinions=True))
    steps = [step.flows for step in collector.run(replay_batches([path], progress=False))]
    rows = {name: np.concatenate([step[name] for step in steps]) for name in steps[0]}
    order = np.lexsort((rows["ts_start"], rows["dst_port"]))
    return {name: column[order] for name, column in rows.items()}, collector


@pytest.fixture(scope="module")
def tshark() -> str:
    path = shutil.which("tshark")
    require(path is not None, "tshark is not installed")
    assert path is not None
    return path


def test_the_highest_layer_skips_what_we_know_already() -> None:
    assert highest_layer("eth:ethertype:ip:udp:sip") == "sip"
    assert highest_layer("eth:ethertype:ip:tcp:mbtcp:modbus") == "modbus"
    assert highest_layer("eth:ethertype:ip:gre:erspan:eth:ethertype:ip:udp:data") == ""
    assert highest_layer("eth:ethertype:ip:udp:geneve:eth:ethertype:mpls:ip:tcp") == ""  # tunnels we open
    assert highest_layer("chdlc:ip:tcp:bgp") == "bgp" and highest_layer("ppp:ipv6:udp") == ""
    assert highest_layer("eth:ethertype:ip:udp:snmp:_ws.malformed") == "snmp"
    assert best_answer(["eth:ethertype:ip:tcp", "eth:ethertype:ip:tcp:mqtt"]) == "mqtt"
    assert best_answer(["eth:ethertype:ip:tcp", ""]) == ""


def test_our_dpi_does_not_know_the_test_protocols() -> None:
    """The premise: every flow the next test expects Wireshark to name is `unknown` to us, DNS is not."""
    frames = [mirrored(l4, 2) for l4 in (*UNKNOWN_TO_US.values(), KNOWN)]
    batch = batch_of(frames, np.full(len(frames), T0))
    labels = classify(batch.data, Decoder(load_topology(SAMPLES / "topology.yaml")).decode(batch))
    assert labels.confidence.tolist()[:-1] == [0.0] * len(UNKNOWN_TO_US) and labels.confidence[-1] > 0


def test_unknown_flows_get_wiresharks_protocol_in_their_later_rows(tmp_path: Path, tshark: str) -> None:
    times = [T0 + step * SECOND // 4 for step in range(12)]  # 3 s: rows in three export intervals
    flows = [(mirrored(l4, host), times) for host, l4 in enumerate((*UNKNOWN_TO_US.values(), KNOWN, NOBODY), 2)]
    path = capture(tmp_path / "unknown.pcap", flows)
    plain, _ = replay(path, None)
    rows, collector = replay(path, SecondOpinionConfig())
    truth = {int(l4.dport): name for name, l4 in UNKNOWN_TO_US.items()}
    for port, protocol in truth.items():
        details = rows["app_detail"][rows["dst_port"] == port].tolist()
        assert set(rows["app"][rows["dst_port"] == port]) == {"unknown"}
        answered = details.index(f"wireshark:{protocol}")
        assert details[answered:] == [f"wireshark:{protocol}"] * (len(details) - answered)
        assert set(details[:answered]) <= {""}
    others = ~np.isin(rows["dst_port"], list(truth))
    assert set(rows["app_detail"][rows["dst_port"] == 9999]) == {""}  # Wireshark knew no more than we do
    assert set(rows["app"][rows["dst_port"] == 53]) == {"dns"}
    for name in rows:  # rows of the flows DPI knows, or nobody knows, are as without the second opinion
        assert rows[name][others].tolist() == plain[name][others].tolist(), name
    assert (rows["packets"] == plain["packets"]).all()
    stats = collector.stats.opinions
    assert stats.sampled == stats.dissected == len(truth) + 1 and stats.answered == len(truth)
    assert stats.dropped == stats.failed == 0


def test_a_flow_forgotten_when_idle_gets_its_answer_back_without_a_second_sample(tmp_path: Path, tshark: str) -> None:
    radius = [T0 + step * SECOND // 4 for step in range(4)]
    later = [40 * SECOND + ts for ts in radius]  # past the idle timeout: the flow table forgets the flow
    filler = [T0 + 20 * SECOND]  # another flow's packet between them: packet time moves on, idle flows go
    path = capture(tmp_path / "idle.pcap", [(mirrored(UNKNOWN_TO_US["radius"], 2), radius + later),
                                            (mirrored(KNOWN, 3), filler)])
    rows, collector = replay(path, SecondOpinionConfig())
    radius_rows = rows["dst_port"] == 1812
    after = radius_rows & (rows["ts_start"].astype(np.int64) >= (T0 + 40 * SECOND) // 1000)
    assert after.any() and set(rows["app_detail"][after]) == {"wireshark:radius"}
    assert collector.stats.opinions.sampled == 1


def test_a_burst_of_unknown_flows_keeps_to_the_rate(tmp_path: Path, tshark: str) -> None:
    flows = [(mirrored(UDP(sport=20000 + index, dport=5060) / Raw(SIP), 3), [T0 + index * SECOND // 100])
             for index in range(300)]  # 300 new flows over 3 s of packet time
    config = SecondOpinionConfig(flows_per_s=4, burst=3, frames=1)
    rows, collector = replay(capture(tmp_path / "burst.pcap", flows), config)
    stats = collector.stats.opinions
    packet_seconds = 3
    admitted = stats.sampled + stats.dropped
    assert config.burst < admitted <= config.flows_per_s * packet_seconds + config.burst  # the bucket refills
    assert stats.dissected == stats.answered == stats.sampled  # every sampled flow is SIP
    assert len(rows["app"]) == len(flows)  # every flow still has its row


def test_a_full_queue_drops_and_counts(tshark: str) -> None:
    """Before its worker starts, the queue only fills: what does not fit is dropped, never waited for."""
    frames = [mirrored(UDP(sport=30000 + index, dport=5060) / Raw(SIP), 4) for index in range(8)]
    batch = batch_of(frames, T0 + np.arange(len(frames)))
    decoded = Decoder(load_topology(SAMPLES / "topology.yaml")).decode(batch)
    labels, table = classify(batch.data, decoded), FlowTable()
    table.update(decoded, app=labels.app, confidence=labels.confidence, detail=labels.detail)
    opinion = SecondOpinion(SecondOpinionConfig(burst=6, frames=1, queue_flows=2), tshark)
    opinion.observe(batch, decoded, labels, table)
    assert (opinion.stats.sampled, opinion.stats.dropped) == (2, 4)  # 6 admitted by the bucket, 2 fit


def test_a_failing_tshark_is_counted_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = capture(tmp_path / "unknown.pcap", [(mirrored(UNKNOWN_TO_US["sip"], 2), [T0, T0 + SECOND])])
    plain, _ = replay(path, None)
    broken = tmp_path / "bin" / "tshark"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'tshark: cannot start' >&2\nexit 2\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(broken.parent))
    rows, collector = replay(path, SecondOpinionConfig())
    for name in rows:
        assert rows[name].tolist() == plain[name].tolist(), name
    stats = collector.stats.opinions
    assert (stats.sampled, stats.failed, stats.dissected, stats.answered) == (1, 1, 0, 0)


def test_without_tshark_the_feature_is_off_and_collection_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = capture(tmp_path / "unknown.pcap", [(mirrored(UNKNOWN_TO_US["sip"], 2), [T0, T0 + SECOND])])
    plain, _ = replay(path, None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="collectors.second_opinion"):
        rows, collector = replay(path, SecondOpinionConfig())
    assert [record.getMessage() for record in caplog.records] == [
        "second opinion off: tshark not found (sudo apt-get install -y tshark)"]
    for name in rows:
        assert rows[name].tolist() == plain[name].tolist(), name
    assert collector.stats.opinions.counts() == dict.fromkeys(collector.stats.opinions.counts(), 0)


def settings(command: str, *flags: str, text: str = "", tmp_path: Path) -> SecondOpinionConfig | None:
    words = [command, *flags]
    if text:
        path = tmp_path / "fabricscope.yaml"
        path.write_text(text)
        words += ["--config", str(path)]
    if command == "replay":
        words[1:1] = ["x.pcap", "--topology", "t.yaml"]
    return second_opinion_for(load_config(build_parser(command).parse_args(words)), replay=command == "replay")


def test_on_for_capture_and_demo_asked_for_in_replay_and_the_flag_wins_over_the_file(tmp_path: Path) -> None:
    capture_on = settings("capture", "--topology", "t.yaml", text="second_opinion: {flows_per_s: 2}\n",
                          tmp_path=tmp_path)
    assert capture_on is not None and capture_on.flows_per_s == 2
    assert settings("capture", "--topology", "t.yaml", "--no-second-opinion", text="second_opinion: {dissect: true}\n",
                    tmp_path=tmp_path) is None
    assert settings("demo", text="second_opinion: {dissect: false}\n", tmp_path=tmp_path) is None
    assert settings("replay", tmp_path=tmp_path) is None
    assert settings("replay", "--second-opinion", tmp_path=tmp_path) == SecondOpinionConfig(in_replay=True)
    assert settings("replay", text="second_opinion: {in_replay: true}\n", tmp_path=tmp_path) is not None
    with pytest.raises(InputError, match="burst"):
        settings("replay", text="second_opinion: {burst: 0}\n", tmp_path=tmp_path)


def test_replay_with_the_second_opinion_writes_it_in_app_detail(tmp_path: Path, tshark: str) -> None:
    times = [T0 + step * SECOND // 4 for step in range(8)]
    path = capture(tmp_path / "radius.pcap", [(mirrored(UNKNOWN_TO_US["radius"], 2), times)])
    out = tmp_path / "flows.jsonl"
    done = subprocess.run([sys.executable, "-m", "fabricscope.cli", "replay", str(path), "--topology",
                           str(SAMPLES / "topology.yaml"), "--out", str(out), "--no-progress", "--second-opinion"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    details = [json.loads(line)["app_detail"] for line in out.read_text().splitlines()]
    assert details[-1] == "wireshark:radius" and "Wireshark named 1 of 1 unknown flows" in done.stderr
