"""Decoder: every DecodedPackets field of scapy-built frames, per protocol, plus malformed frames counted."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pcap_builders import pcap_header, pcap_record, pcapng_epb, pcapng_idb, pcapng_shb, read_all
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.lldp import LLDPDUChassisID, LLDPDUEndOfLLDPDU, LLDPDUPortID, LLDPDUTimeToLive
from scapy.contrib.mac_control import MACControlClassBasedFlowControl
from scapy.contrib.mpls import MPLS
from scapy.contrib.roce import AETH, BTH, cnp
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from collectors.decode import Decoder
from collectors.packets import DecodedPackets, PacketBatch
from pipeline.addresses import words_of
from pipeline.topology import DOWN, UNKNOWN, UP, Topology, load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    """The sample fabric plus a mirror VLAN (3011 -> leaf1-spine1) and a capture interface (tap-l2s1)."""
    text = (SAMPLES / "topology.yaml").read_text().replace(
        "mirrors:\n",
        "mirrors:\n  - {vlan: 3011, link: leaf1-spine1}\n  - {interface: tap-l2s1, link: leaf2-spine1}\n",
    )
    path = tmp_path_factory.mktemp("topology") / "topology.yaml"
    path.write_text(text)
    return load_topology(path)


def link_index(topology: Topology, link_id: str) -> int:
    return topology.link(link_id).index


def decode(tmp_path: Path, frames: list[Packet | bytes], topology: Topology | None = None,
           wirelen: list[int] | None = None) -> tuple[PacketBatch, DecodedPackets, Decoder]:
    raw = [bytes(frame) for frame in frames]
    lengths = wirelen or [len(frame) for frame in raw]
    path = tmp_path / "frames.pcap"
    path.write_bytes(pcap_header(nano=True) + b"".join(
        pcap_record(1_700_000_000_000_000_000 + i, frame, nano=True, wirelen=length)
        for i, (frame, length) in enumerate(zip(raw, lengths, strict=True))
    ))
    batches, _ = read_all(path)
    decoder = Decoder(topology)
    return batches[0], decoder.decode(batches[0]), decoder


def payload_start(packet: Packet, layer: type[Packet], nth: int = 1) -> int:
    """Offset in the frame of the payload of the `nth` `layer` header."""
    return len(bytes(packet)) - len(bytes(packet[layer:nth].payload))


def check(
    tmp_path: Path, packet: Packet, topology: Topology | None = None, *, wirelen: int | None = None,
    captured: int | None = None, **expected: Any,
) -> None:
    """Decode one frame (optionally truncated to `captured` bytes) and compare every field with `expected`,
    fields not named taking their 'absent' value."""
    frame = bytes(packet)[:captured] if captured else bytes(packet)
    batch, decoded, _ = decode(tmp_path, [frame], topology, [wirelen or len(bytes(packet))])
    src = expected.pop("src", None)
    dst = expected.pop("dst", None)
    payload_at = expected.pop("payload_at", None)
    want: dict[str, Any] = {
        "ok": True, "link": -1, "direction": UNKNOWN, "erspan_session": -1, "wire_len": len(bytes(packet)),
        "vlan": 0, "ethertype": 0, "src_hi": 0, "src_lo": 0, "dst_hi": 0, "dst_lo": 0, "proto": 0,
        "src_port": 0, "dst_port": 0, "dscp": 0, "ecn": 0, "tcp_flags": 0, "vni": 0, "vxlan": False,
        "is_roce": False,
        "bth_opcode": 0, "dqpn": 0, "psn": 0, "fecn": False, "becn": False, "aeth_syndrome": 0xFF,
        "pfc_enable": 0, "pfc_quanta": [0] * 8, "app_proto": expected.get("proto", 0),
        "app_src_port": expected.get("src_port", 0), "app_dst_port": expected.get("dst_port", 0),
        "payload_offset": -1, "payload_caplen": 0, "ts_ns": 1_700_000_000_000_000_000,
        "capture_ts_ns": 1_700_000_000_000_000_000, "switch_timed": False, "outer_src_hi": 0, "outer_src_lo": 0,
        "outer_dst_hi": 0, "outer_dst_lo": 0,
    }
    if src is not None:
        want["src_hi"], want["src_lo"] = words_of(src)
        want["dst_hi"], want["dst_lo"] = words_of(dst)
    if payload_at is not None:
        want["payload_offset"] = int(batch.offset[0]) + payload_at
        want["payload_caplen"] = len(frame) - payload_at
    want.update(expected)
    got = {field.name: getattr(decoded, field.name)[0] for field in dataclasses.fields(decoded)}
    got["pfc_quanta"] = got["pfc_quanta"].tolist()
    assert set(got) == set(want)
    mismatches = {name: (got[name], want[name]) for name in want if got[name] != want[name]}
    assert not mismatches


def roce_frame(opcode: int, *, src: str = "10.0.1.5", dst: str = "10.0.2.7", tos: int = 0x6A, dqpn: int = 0x12345,
               psn: int = 0xFFFFFE, syndrome: int | None = None, fecn: int = 0, becn: int = 0) -> Packet:
    bth = BTH(opcode=opcode, dqpn=dqpn, psn=psn, fecn=fecn, becn=becn)
    inner = IP(src=src, dst=dst, tos=tos) / UDP(sport=49152, dport=4791) / bth
    if syndrome is not None:
        inner = inner / AETH(syndrome=syndrome, msn=5)
    return Ether(**MAC) / inner / Raw(b"\0" * 32)


def test_ipv4_options_tcp(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IP(src="10.0.1.1", dst="10.0.3.1", tos=0xB9, options=[IPOption_RR(routers=["1.2.3.4"])]) \
        / TCP(sport=40000, dport=22, flags="PA") / Raw(b"SSH-2.0-x\r\n")
    check(tmp_path, packet, ethertype=0x0800, src="10.0.1.1", dst="10.0.3.1", proto=6, src_port=40000,
          dst_port=22, dscp=0xB9 >> 2, ecn=1, tcp_flags=0x18, payload_at=payload_start(packet, TCP))


def test_ipv6_extension_chain_udp(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IPv6(src="fd00:0:0:1::5", dst="fd00:0:0:4::9", tc=0x8B) / IPv6ExtHdrHopByHop() \
        / IPv6ExtHdrRouting(addresses=["fd00::1"]) / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(offset=0, m=1) \
        / UDP(sport=5000, dport=53) / Raw(b"q" * 12)
    check(tmp_path, packet, ethertype=0x86DD, src="fd00:0:0:1::5", dst="fd00:0:0:4::9", proto=17,
          src_port=5000, dst_port=53, dscp=0x8B >> 2, ecn=3, payload_at=payload_start(packet, UDP))


def test_ipv6_later_fragment_has_no_ports(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrFragment(offset=100, nh=17) \
        / Raw(b"x" * 40)
    check(tmp_path, packet, ethertype=0x86DD, src="fd00::1", dst="fd00::2", proto=17)


def test_ipv4_later_fragment_has_no_ports(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IP(src="10.0.1.1", dst="10.0.1.2", frag=50, proto=17) / Raw(b"x" * 40)
    check(tmp_path, packet, ethertype=0x0800, src="10.0.1.1", dst="10.0.1.2", proto=17)


def test_qinq_reports_innermost_vid(tmp_path: Path) -> None:
    packet = Ether(**MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src="10.0.1.1", dst="10.0.2.1") \
        / UDP(sport=1, dport=2)
    check(tmp_path, packet, vlan=20, ethertype=0x0800, src="10.0.1.1", dst="10.0.2.1", proto=17, src_port=1,
          dst_port=2, payload_at=payload_start(packet, UDP))


def test_mirror_vlan_attributes_and_is_not_counted(tmp_path: Path, topology: Topology) -> None:
    packet = Ether(**MAC) / Dot1Q(vlan=3011) / Dot1Q(vlan=7) / IP(src="10.0.2.1", dst="10.0.1.1") \
        / UDP(sport=1, dport=2)
    check(tmp_path, packet, topology, link=link_index(topology, "leaf1-spine1"), direction=DOWN, vlan=7,
          ethertype=0x0800, src="10.0.2.1", dst="10.0.1.1", proto=17, src_port=1, dst_port=2,
          wire_len=len(bytes(packet)) - 4, payload_at=payload_start(packet, UDP))


def test_erspan_ii_roce_write(tmp_path: Path, topology: Topology) -> None:
    inner = roce_frame(0x0A, fecn=1)
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(seqnum_present=1, sequence_number=9) \
        / ERSPAN_II(session_id=11, vlan=5) / inner
    check(tmp_path, packet, topology, link=link_index(topology, "leaf1-spine1"), direction=UP,
          erspan_session=11, wire_len=len(bytes(inner)), ethertype=0x0800, src="10.0.1.5", dst="10.0.2.7",
          proto=17, src_port=49152, dst_port=4791, dscp=0x6A >> 2, ecn=2, is_roce=True, bth_opcode=0x0A,
          dqpn=0x12345, psn=0xFFFFFE, fecn=True, payload_at=payload_start(packet, UDP, 1))


def test_erspan_type_i_and_erspan_ii_with_gre_key(tmp_path: Path, topology: Topology) -> None:
    inner = roce_frame(0x0A, psn=3)
    type_i = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(proto=0x88BE) / inner
    check(tmp_path, type_i, topology, wire_len=len(bytes(inner)), ethertype=0x0800, src="10.0.1.5",
          dst="10.0.2.7", proto=17, src_port=49152, dst_port=4791, dscp=0x6A >> 2, ecn=2, is_roce=True,
          bth_opcode=0x0A, dqpn=0x12345, psn=3, payload_at=payload_start(type_i, UDP, 1))
    keyed = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(key_present=1, key=7, seqnum_present=1,
                                                                         chksum_present=1) \
        / ERSPAN_II(session_id=11) / inner
    check(tmp_path, keyed, topology, link=link_index(topology, "leaf1-spine1"), direction=UP, erspan_session=11,
          wire_len=len(bytes(inner)), ethertype=0x0800, src="10.0.1.5", dst="10.0.2.7", proto=17,
          src_port=49152, dst_port=4791, dscp=0x6A >> 2, ecn=2, is_roce=True, bth_opcode=0x0A, dqpn=0x12345,
          psn=3, payload_at=payload_start(keyed, UDP, 1))


@pytest.mark.parametrize("payload", [100, 2], ids=["full-size", "padded"])
def test_mirror_copy_with_fcs_counts_the_frame_without_it(tmp_path: Path, topology: Topology, payload: int) -> None:
    frame = bytes(Ether(**MAC) / IP(src="10.0.1.5", dst="10.0.2.7") / UDP(sport=5, dport=6) / Raw(b"a" * payload))
    frame = frame.ljust(60, b"\0")  # padded to the minimum frame
    with_fcs = frame + struct.pack("<I", zlib.crc32(frame))
    mirrored = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(seqnum_present=1) \
        / ERSPAN_II(session_id=11) / Raw(with_fcs)
    _, decoded, _ = decode(tmp_path, [mirrored, Ether(with_fcs), Ether(frame)], topology)
    assert decoded.ok.all()
    assert decoded.wire_len.tolist() == [len(frame)] * 3


def test_erspan_iii_platform_subheader_ipv6_nak(tmp_path: Path, topology: Topology) -> None:
    bth = BTH(opcode=0x11, dqpn=77, psn=1000)
    inner = Ether(**MAC) / IPv6(src="fd00:0:0:3::1", dst="fd00:0:0:2::1", tc=0x03) \
        / UDP(sport=50000, dport=4791) / bth / AETH(syndrome=0x61, msn=9)
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE() \
        / ERSPAN_III(session_id=22, o=1) / ERSPAN_PlatformSpecific(platf_id=3) / inner
    check(tmp_path, packet, topology, link=link_index(topology, "leaf2-spine2"), direction=DOWN,
          erspan_session=22, wire_len=len(bytes(inner)), ethertype=0x86DD, src="fd00:0:0:3::1",
          dst="fd00:0:0:2::1", proto=17, src_port=50000, dst_port=4791, ecn=3, is_roce=True, bth_opcode=0x11,
          dqpn=77, psn=1000, aeth_syndrome=0x61, payload_at=payload_start(packet, UDP, 1))


CAPTURED_NS = 1_700_000_000_000_000_000  # the record time `decode` writes for the first frame


@pytest.mark.parametrize(("granularity", "stamp", "switch_ns"), [
    (1, (CAPTURED_NS - 5_000) // 100 % 2**32, CAPTURED_NS - 5_000),  # 100 ns units, 5 µs on the mirror path
    (0, (CAPTURED_NS - 300_000) // 100_000 % 2**32, CAPTURED_NS - 300_000),  # 100 µs units
    (2, (CAPTURED_NS - 42_000) % 1_000_000_000, CAPTURED_NS - 42_000),  # IEEE 1588: ns within the second
], ids=["100ns", "100us", "ieee1588"])
def test_erspan_iii_switch_timestamp_is_packet_time(
    tmp_path: Path, topology: Topology, granularity: int, stamp: int, switch_ns: int
) -> None:
    inner = roce_frame(0x0A, psn=5)
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(seqnum_present=1) \
        / ERSPAN_III(session_id=41, gra=granularity, timestamp=stamp) / inner
    check(tmp_path, packet, topology, link=link_index(topology, "leaf4-spine1"), direction=UNKNOWN,
          erspan_session=41, wire_len=len(bytes(inner)), ethertype=0x0800, src="10.0.1.5", dst="10.0.2.7",
          proto=17, src_port=49152, dst_port=4791, dscp=0x6A >> 2, ecn=2, is_roce=True, bth_opcode=0x0A,
          dqpn=0x12345, psn=5, payload_at=payload_start(packet, UDP, 1), ts_ns=switch_ns, switch_timed=True)


@pytest.mark.parametrize(("granularity", "stamp"), [(1, 0), (1, 123_456), (3, 99)],
                         ids=["not-stamped", "unsynchronised", "user-granularity"])
def test_erspan_iii_untrusted_timestamp_keeps_capture_time(
    tmp_path: Path, topology: Topology, granularity: int, stamp: int
) -> None:
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(seqnum_present=1) \
        / ERSPAN_III(session_id=41, gra=granularity, timestamp=stamp) / roce_frame(0x0A, psn=5)
    _, decoded, _ = decode(tmp_path, [packet], topology)
    assert decoded.ok[0] and not decoded.switch_timed[0]
    assert int(decoded.ts_ns[0]) == int(decoded.capture_ts_ns[0]) == CAPTURED_NS


def test_erspan_iii_without_subheader(tmp_path: Path, topology: Topology) -> None:
    inner = roce_frame(0x81, becn=1, psn=0, tos=0x02)
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE() / ERSPAN_III(session_id=41) / inner
    check(tmp_path, packet, topology, link=link_index(topology, "leaf4-spine1"), direction=UNKNOWN,
          erspan_session=41, wire_len=len(bytes(inner)), ethertype=0x0800, src="10.0.1.5", dst="10.0.2.7",
          proto=17, src_port=49152, dst_port=4791, ecn=2, is_roce=True, bth_opcode=0x81, dqpn=0x12345, becn=True,
          payload_at=payload_start(packet, UDP, 1))


def test_erspan_type_i(tmp_path: Path) -> None:
    inner = Ether(**MAC) / IP(src="10.0.1.1", dst="10.0.1.2") / ICMP()
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(proto=0x88BE) / inner
    check(tmp_path, packet, wire_len=len(bytes(inner)), ethertype=0x0800, src="10.0.1.1", dst="10.0.1.2",
          proto=1, payload_at=payload_start(packet, ICMP))


def _outer(src: str, dst: str) -> dict[str, int]:
    (src_hi, src_lo), (dst_hi, dst_lo) = words_of(src), words_of(dst)
    return {"outer_src_hi": src_hi, "outer_src_lo": src_lo, "outer_dst_hi": dst_hi, "outer_dst_lo": dst_lo}


def test_gre_inner_flow_is_the_flow(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99", tos=0x2A) / GRE(proto=0x0800) \
        / IP(src="10.0.0.1", dst="10.0.0.2", tos=0xFC) / UDP(sport=7, dport=9)
    check(tmp_path, packet, ethertype=0x0800, src="10.0.0.1", dst="10.0.0.2", proto=17, src_port=7, dst_port=9,
          dscp=0x2A >> 2, ecn=2, payload_at=payload_start(packet, UDP), **_outer("192.0.2.1", "192.0.2.99"))


def test_gre_transparent_ethernet_with_key(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(key_present=1, key=0xBEEF, proto=0x6558) \
        / Ether(**MAC) / Dot1Q(vlan=5) / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=179, dport=40000, flags="S")
    check(tmp_path, packet, ethertype=0x0800, src="fd00::1", dst="fd00::2", proto=6, src_port=179,
          dst_port=40000, tcp_flags=0x02, vni=0xBEEF, payload_at=payload_start(packet, TCP),
          **_outer("192.0.2.1", "192.0.2.99"))


@pytest.mark.parametrize(("outer", "inner"), [
    (IP(src="192.0.2.1", dst="192.0.2.2"), IP(src="10.1.0.1", dst="10.1.0.2")),
    (IP(src="192.0.2.1", dst="192.0.2.2"), IPv6(src="fd00:1::1", dst="fd00:1::2")),
    (IPv6(src="2001:db8::1", dst="2001:db8::2"), IP(src="10.1.0.1", dst="10.1.0.2")),
    (IPv6(src="2001:db8::1", dst="2001:db8::2"), IPv6(src="fd00:1::1", dst="fd00:1::2")),
], ids=["4in4", "6in4", "4in6", "6in6"])
def test_ip_in_ip_inner_flow_is_the_flow(tmp_path: Path, outer: Packet, inner: Packet) -> None:
    packet = Ether(**MAC) / outer / inner / UDP(sport=49152, dport=4791) / BTH(opcode=0x0A, dqpn=0x42, psn=7) \
        / Raw(b"\0" * 32)
    check(tmp_path, packet, ethertype=0x0800 if outer.version == 4 else 0x86DD, src=inner.src, dst=inner.dst,
          proto=17, src_port=49152, dst_port=4791, is_roce=True, bth_opcode=0x0A, dqpn=0x42, psn=7,
          payload_at=payload_start(packet, UDP), **_outer(outer.src, outer.dst))


def test_geneve_inner_flow_is_the_flow(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / UDP(sport=50000, dport=6081) \
        / GENEVE(vni=0x1234, proto=0x6558, optionlen=2, options=b"\x01\x02\x03\x04\x05\x06\x07\x08") \
        / Ether(**MAC) / IP(src="172.16.0.1", dst="172.16.0.2") / TCP(sport=22, dport=60000, flags="A")
    check(tmp_path, packet, ethertype=0x0800, src="172.16.0.1", dst="172.16.0.2", proto=6, src_port=22,
          dst_port=60000, tcp_flags=0x10, vni=0x1234, payload_at=payload_start(packet, TCP),
          **_outer("192.0.2.1", "192.0.2.99"))


def test_mpls_label_stack_opens_to_ip(tmp_path: Path) -> None:
    packet = Ether(**MAC) / MPLS(label=100, s=0) / MPLS(label=20001, s=1) / IP(src="10.0.0.1", dst="10.0.0.2",
                                                                              tos=0x68) / UDP(sport=1, dport=2)
    check(tmp_path, packet, ethertype=0x0800, src="10.0.0.1", dst="10.0.0.2", proto=17, src_port=1, dst_port=2,
          dscp=0x68 >> 2, vni=20001, payload_at=payload_start(packet, UDP))


def vxlan_frame(inner: Packet, outer: Packet | None = None, vni: int = 0xABCDE) -> Packet:
    """`inner` (an Ethernet frame) between two VTEPs."""
    return Ether(**MAC) / (outer or IP(src="10.0.1.1", dst="10.0.4.4", tos=0x21)) / UDP(sport=61000, dport=4789) \
        / VXLAN(vni=vni) / inner


@pytest.mark.parametrize(("outer", "inner"), [
    (IP(src="10.0.1.1", dst="10.0.4.4", tos=0x21), IP(src="172.16.0.1", dst="172.16.0.2", tos=0xFC)),
    (IPv6(src="fd00:0:0:1::1", dst="fd00:0:0:4::4", tc=0x21), IPv6(src="fd10::1", dst="fd10::2")),
], ids=["4in4", "6in6"])
def test_vxlan_inner_flow_is_the_flow(tmp_path: Path, outer: Packet, inner: Packet) -> None:
    """Two tenant flows between one VTEP pair are two flows: the inner 5-tuple and the VNI key them, the VTEPs
    are kept as the outer endpoints, DSCP/ECN are the outer header's (the fabric marks it) and the TCP flags
    the tenant's."""
    packet = vxlan_frame(Ether(**MAC) / inner / TCP(sport=443, dport=5555, flags="PA") / Raw(b"hello"), outer)
    check(tmp_path, packet, ethertype=0x0800 if outer.version == 4 else 0x86DD, src=inner.src, dst=inner.dst,
          proto=6, src_port=443, dst_port=5555, dscp=8, ecn=1, tcp_flags=0x18,
          vni=0xABCDE, vxlan=True, payload_at=payload_start(packet, TCP), **_outer(outer.src, outer.dst))


def test_vxlan_inner_roce(tmp_path: Path) -> None:
    packet = vxlan_frame(roce_frame(0x04, dqpn=5, psn=17), vni=7)
    check(tmp_path, packet, ethertype=0x0800, src="10.0.1.5", dst="10.0.2.7", proto=17, src_port=49152,
          dst_port=4791, dscp=8, ecn=1, vni=7, vxlan=True, is_roce=True, bth_opcode=4, dqpn=5, psn=17,
          payload_at=payload_start(packet, UDP, 2), **_outer("10.0.1.1", "10.0.4.4"))


def test_vxlan_carrying_no_ip_keeps_the_outer_flow(tmp_path: Path) -> None:
    packet = vxlan_frame(Ether(**MAC) / ARP(psrc="172.16.0.1", pdst="172.16.0.2"), vni=9)
    check(tmp_path, packet, ethertype=0x0800, src="10.0.1.1", dst="10.0.4.4", proto=17, src_port=61000,
          dst_port=4789, dscp=8, ecn=1, vni=9, vxlan=True, app_proto=0, app_src_port=0, app_dst_port=0)


def test_vxlan_cut_before_the_inner_ip_header_keeps_the_outer_flow(tmp_path: Path) -> None:
    packet = vxlan_frame(Ether(**MAC) / IP(src="172.16.0.1", dst="172.16.0.2") / TCP(sport=443, dport=5555))
    inner_ip = len(bytes(packet)) - len(bytes(packet[VXLAN].payload[IP]))
    check(tmp_path, packet, captured=inner_ip + 10, ethertype=0x0800, src="10.0.1.1", dst="10.0.4.4", proto=17,
          src_port=61000, dst_port=4789, dscp=8, ecn=1, vni=0xABCDE, vxlan=True, app_proto=0, app_src_port=0,
          app_dst_port=0)


def test_cnp_helper_frame(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IP(src="10.0.2.7", dst="10.0.1.5", tos=0xC0) / UDP(sport=49152, dport=4791) / cnp(99)
    check(tmp_path, packet, ethertype=0x0800, src="10.0.2.7", dst="10.0.1.5", proto=17, src_port=49152,
          dst_port=4791, dscp=48, is_roce=True, bth_opcode=0x81, dqpn=99, becn=True,
          payload_at=payload_start(packet, UDP))


def test_pfc_pause(tmp_path: Path) -> None:
    packet = Ether(src=MAC["src"], dst="01:80:c2:00:00:01") / MACControlClassBasedFlowControl(
        c0_enabled=1, c0_pause_time=7, c3_enabled=1, c3_pause_time=0xFFFF)
    check(tmp_path, packet, ethertype=0x8808, pfc_enable=0x09, pfc_quanta=[7, 0, 0, 0xFFFF, 0, 0, 0, 0])


def test_lldp(tmp_path: Path) -> None:
    packet = Ether(src=MAC["src"], dst="01:80:c2:00:00:0e") / LLDPDUChassisID(subtype=4, id="00:11:22:33:44:55") \
        / LLDPDUPortID(subtype=5, id="Ethernet49") / LLDPDUTimeToLive(ttl=120) / LLDPDUEndOfLLDPDU()
    check(tmp_path, packet, ethertype=0x88CC)


def test_arp_addresses_are_sender_and_target(tmp_path: Path) -> None:
    packet = Ether(**MAC) / ARP(psrc="10.0.1.1", pdst="10.0.1.2")
    check(tmp_path, packet, ethertype=0x0806, src="10.0.1.1", dst="10.0.1.2")


def test_icmpv6(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IPv6(src="fd00:0:0:1::1", dst="fd00:0:0:1::2") / ICMPv6EchoRequest(data=b"ping")
    check(tmp_path, packet, ethertype=0x86DD, src="fd00:0:0:1::1", dst="fd00:0:0:1::2", proto=58,
          payload_at=payload_start(packet, ICMPv6EchoRequest) - 4)


def test_capture_truncation_takes_length_from_ip(tmp_path: Path) -> None:
    packet = roce_frame(0x0A) / Raw(b"\0" * 1000)
    check(tmp_path, packet, captured=70, wire_len=len(bytes(packet)), ethertype=0x0800, src="10.0.1.5",
          dst="10.0.2.7", proto=17, src_port=49152, dst_port=4791, dscp=0x6A >> 2, ecn=2, is_roce=True,
          bth_opcode=0x0A, dqpn=0x12345, psn=0xFFFFFE, payload_at=payload_start(packet, UDP))


def test_mirror_truncation_takes_length_from_inner_ip(tmp_path: Path, topology: Topology) -> None:
    inner = roce_frame(0x0A) / Raw(b"\0" * 1000)
    cut = Ether(bytes(inner)[:100])
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(seqnum_present=1) \
        / ERSPAN_II(session_id=12, t=1) / cut
    check(tmp_path, packet, topology, link=link_index(topology, "leaf1-spine2"), direction=UP, erspan_session=12,
          wire_len=len(bytes(inner)), ethertype=0x0800, src="10.0.1.5", dst="10.0.2.7", proto=17,
          src_port=49152, dst_port=4791, dscp=0x6A >> 2, ecn=2, is_roce=True, bth_opcode=0x0A, dqpn=0x12345,
          psn=0xFFFFFE, payload_at=payload_start(packet, UDP, 1))


def test_truncated_non_ip_keeps_recorded_length_minus_encapsulation(tmp_path: Path) -> None:
    inner = Ether(src=MAC["src"], dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02" * 300)
    packet = Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.99") / GRE(seqnum_present=1) \
        / ERSPAN_II(session_id=1) / inner
    check(tmp_path, packet, captured=120, erspan_session=1, wire_len=len(bytes(inner)), ethertype=0x88CC)


def test_padding_is_part_of_the_frame(tmp_path: Path) -> None:
    packet = Ether(**MAC) / IP(src="10.0.1.1", dst="10.0.1.2") / UDP(sport=1, dport=2) / Raw(b"\0" * 18)
    check(tmp_path, packet, ethertype=0x0800, src="10.0.1.1", dst="10.0.1.2", proto=17, src_port=1, dst_port=2,
          payload_at=payload_start(packet, UDP))


def test_interface_name_attributes_pcapng(tmp_path: Path, topology: Topology) -> None:
    frame = bytes(Ether(**MAC) / IP(src="10.0.2.1", dst="10.0.3.1") / UDP(sport=1, dport=2))
    path = tmp_path / "a.pcapng"
    path.write_bytes(pcapng_shb() + pcapng_idb("eth0") + pcapng_idb("tap-l2s1")
                     + pcapng_epb(0, 1, frame) + pcapng_epb(1, 2, frame))
    batches, _ = read_all(path)
    decoded = Decoder(topology).decode(batches[0])
    assert decoded.link.tolist() == [-1, link_index(topology, "leaf2-spine1")]
    assert decoded.direction.tolist() == [UNKNOWN, UP]


def test_attribution_prefers_erspan_then_mirror_vlan_then_interface(tmp_path: Path, topology: Topology) -> None:
    inner = Ether(**MAC) / IP(src="10.0.3.1", dst="10.0.4.1") / UDP(sport=1, dport=2)
    frames = [
        Ether(**MAC) / Dot1Q(vlan=3011) / IP(src="192.0.2.1", dst="192.0.2.9") / GRE(seqnum_present=1)
        / ERSPAN_II(session_id=32) / inner,
        Ether(**MAC) / Dot1Q(vlan=3011) / IP(src="10.0.3.1", dst="10.0.4.1") / UDP(sport=1, dport=2),
        inner,
    ]
    path = tmp_path / "a.pcapng"
    path.write_bytes(pcapng_shb() + pcapng_idb("tap-l2s1") + b"".join(
        pcapng_epb(0, i, bytes(frame)) for i, frame in enumerate(frames)))
    batches, _ = read_all(path)
    decoded = Decoder(topology).decode(batches[0])
    assert decoded.link.tolist() == [link_index(topology, name) for name in ("leaf3-spine2", "leaf1-spine1",
                                                                               "leaf2-spine1")]


MALFORMED = {
    "short_ethernet": b"\x00" * 10,
    "bad_ip_header": bytes(Ether(**MAC) / IP(ihl=3) / UDP()),
    "short_ip": bytes(Ether(**MAC) / IP() / UDP())[:25],
    "bad_ipv6_extension": bytes(Ether(**MAC) / IPv6() / IPv6ExtHdrDestOpt(len=200) / UDP()),
    "short_l4": bytes(Ether(**MAC) / IP() / TCP())[:40],
    "bad_tcp_offset": bytes(Ether(**MAC) / IP() / TCP(dataofs=2)),
    "short_tunnel": bytes(Ether(**MAC) / IP() / GRE(seqnum_present=1) / ERSPAN_II())[:45],
    "short_bth": bytes(Ether(**MAC) / IP() / UDP(dport=4791) / Raw(b"\x11" * 14)),
    "short_control": bytes(Ether(**MAC, type=0x8808) / Raw(b"\x01\x01\x00\xff")),
}


def test_malformed_frames_are_flagged_and_counted(tmp_path: Path) -> None:
    good = bytes(Ether(**MAC) / IP(src="10.0.1.1", dst="10.0.1.2") / UDP(sport=1, dport=2))
    frames = [good, *MALFORMED.values(), good]
    _, decoded, decoder = decode(tmp_path, frames)
    assert decoded.ok.tolist() == [True] + [False] * len(MALFORMED) + [True]
    assert {reason: count for reason, count in decoder.stats.malformed.items() if count} == dict.fromkeys(
        MALFORMED, 1)
    assert decoder.stats.packets == len(frames)
    bad = ~decoded.ok
    assert (decoded.wire_len[bad] == 0).all() and (decoded.payload_offset[bad] == -1).all()
    assert not decoded.is_roce[bad].any()


LINK_HEADERS: dict[int, bytes] = {  # link type -> header before an IPv4 datagram, built from each format's spec
    1: bytes(Ether(**MAC, type=0x0800)),
    9: b"\xff\x03\x00\x21",
    12: b"",
    14: b"",
    50: b"\xff\x03\x00\x21",
    101: b"",
    104: b"\x0f\x00\x08\x00",
    113: bytes(CookedLinux(proto=0x0800)),
    228: b"",
    276: bytes(CookedLinuxV2(proto=0x0800)),
}


@pytest.mark.parametrize("linktype", sorted(LINK_HEADERS))
def test_link_types_are_opened(tmp_path: Path, linktype: int) -> None:
    datagram = bytes(IP(src="10.0.1.1", dst="10.0.2.2", tos=0x6A) / UDP(sport=4000, dport=53) / Raw(b"q" * 20))
    path = tmp_path / "link.pcap"
    path.write_bytes(pcap_header(linktype=linktype) + pcap_record(1, LINK_HEADERS[linktype] + datagram))
    batches, _ = read_all(path)
    decoder = Decoder()
    decoded = decoder.decode(batches[0])
    assert decoded.ok.tolist() == [True]
    assert words_of("10.0.1.1") == (int(decoded.src_hi[0]), int(decoded.src_lo[0]))
    assert words_of("10.0.2.2") == (int(decoded.dst_hi[0]), int(decoded.dst_lo[0]))
    assert (int(decoded.src_port[0]), int(decoded.dst_port[0]), int(decoded.dscp[0])) == (4000, 53, 0x6A >> 2)
    pseudo = linktype in (113, 276)  # the cooked headers are the capture's, not bytes on the wire
    assert int(decoded.wire_len[0]) == len(datagram) + (0 if pseudo else len(LINK_HEADERS[linktype]))


def test_raw_ipv6_link_type(tmp_path: Path) -> None:
    datagram = bytes(IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2))
    path = tmp_path / "raw6.pcap"
    path.write_bytes(pcap_header(linktype=229) + pcap_record(1, datagram))
    batches, _ = read_all(path)
    decoded = Decoder().decode(batches[0])
    assert decoded.ok.tolist() == [True] and int(decoded.proto[0]) == 6


def test_short_link_header_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "short.pcap"
    path.write_bytes(pcap_header(linktype=113) + pcap_record(1, b"\x00\x00\x00"))
    batches, _ = read_all(path)
    decoder = Decoder()
    assert not decoder.decode(batches[0]).ok.any()
    assert decoder.stats.malformed["short_link_header"] == 1


def test_other_linktypes_are_counted_as_unsupported_not_malformed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ieee80211.pcap"
    path.write_bytes(pcap_header(linktype=105) + pcap_record(1, b"\x08\x00" * 20) + pcap_record(2, b"\x08" * 30))
    batches, _ = read_all(path)
    decoder = Decoder()
    assert not decoder.decode(batches[0]).ok.any()
    decoder.decode(batches[0])
    assert decoder.stats.unsupported_linktypes == {105: 4}
    assert decoder.stats.malformed_total == 0
    assert [record.getMessage() for record in caplog.records if "link type 105" in record.getMessage()] == [
        "link type 105 is not supported (1, 9, 12, 14, 50, 101, 104, 113, 228, 229, 276 are): its packets are "
        "counted, not decoded"]


def test_batch_of_many_mixed_frames_matches_one_by_one(tmp_path: Path, topology: Topology) -> None:
    frames = [
        roce_frame(op, psn=i, dqpn=i * 3) for i, op in enumerate((0x0A, 0x06, 0x11, 0x81, 0x04, 0x0C, 0x10))
    ] + [Ether(**MAC) / ARP(psrc="10.0.1.1", pdst="10.0.2.2"), Ether(**MAC) / IPv6() / UDP()]
    _, together, _ = decode(tmp_path, frames, topology)
    for i, frame in enumerate(frames):
        _, alone, _ = decode(tmp_path, [frame], topology)
        for field in dataclasses.fields(alone):
            if field.name not in ("payload_offset", "ts_ns", "capture_ts_ns"):
                assert np.array_equal(getattr(alone, field.name)[0], getattr(together, field.name)[i]), field.name
