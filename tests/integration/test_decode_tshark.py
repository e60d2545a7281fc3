"""Per-packet cross-check of the decoder against tshark, the independent reference: 5-tuple, DSCP/ECN, BTH
opcode/QP/PSN, ERSPAN session, VLAN, VNI and ARP addresses of the monitored frame must match on every packet.

tshark prints every occurrence of a field (`-E occurrence=a`); `frame.protocols` says which occurrence
belongs to the monitored frame: the first IP layer after the ERSPAN header (DSCP/ECN), and the flow key is
that IP layer or, for VXLAN, the IP layer inside it (the tenant flow), with the L4 header right after it.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from requirements import require
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mac_control import MACControlClassBasedFlowControl
from scapy.contrib.mpls import MPLS
from scapy.contrib.roce import AETH, BTH, cnp
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from collectors.decode import Decoder
from collectors.packets import DecodedPackets
from collectors.pcapfile import open_capture
from pipeline.topology import load_topology

pytestmark = pytest.mark.tshark

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FIELDS = (
    "frame.protocols", "erspan.spanid", "vlan.id", "ip.src", "ip.dst", "ip.proto", "ip.dsfield.dscp",
    "ip.dsfield.ecn", "ipv6.src", "ipv6.dst", "ipv6.tclass.dscp", "ipv6.tclass.ecn", "tcp.srcport", "tcp.dstport",
    "udp.srcport", "udp.dstport", "vxlan.vni", "infiniband.bth.opcode", "infiniband.bth.destqp",
    "infiniband.bth.psn", "arp.src.proto_ipv4", "arp.dst.proto_ipv4",
)
MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def scapy_mix() -> list[Packet]:
    """Every encapsulation the decoder knows, mirrored and not."""
    def erspan2(session: int, inner: Packet) -> Packet:
        return Ether(**MAC) / IP(src="10.254.0.1", dst="198.51.100.10") / GRE(seqnum_present=1) \
            / ERSPAN_II(session_id=session) / inner

    def erspan3(session: int, inner: Packet, platform: bool = False) -> Packet:
        head = Ether(**MAC) / IP(src="10.254.0.2", dst="198.51.100.10") / GRE(seqnum_present=1)
        if platform:
            return head / ERSPAN_III(session_id=session, o=1) / ERSPAN_PlatformSpecific(platf_id=1) / inner
        return head / ERSPAN_III(session_id=session) / inner

    def roce(opcode: int, psn: int, qp: int, tos: int = 0x6A, aeth: int | None = None) -> Packet:
        frame = Ether(**MAC) / IP(src="10.0.1.5", dst="10.0.2.7", tos=tos) / UDP(sport=49152 + psn % 7, dport=4791) \
            / BTH(opcode=opcode, dqpn=qp, psn=psn)
        return frame / AETH(syndrome=aeth) if aeth is not None else frame / Raw(b"\0" * 64)

    frames: list[Packet] = []
    for i in range(20):
        frames += [
            erspan2(11, roce(0x0A, 1000 + i, 0x1234)),
            erspan3(22, roce(0x11, 2000 + i, 0x77, aeth=0x60 + i % 3), platform=i % 2 == 0),
            erspan2(31, Ether(**MAC) / IP(src="10.0.3.1", dst="10.0.1.1", tos=0xC3)
                    / UDP(sport=50000 + i, dport=4791) / cnp(0x99)),
            erspan3(42, Ether(**MAC) / IPv6(src="fd00:0:0:4::1", dst="fd00:0:0:1::1", tc=0x2A)
                    / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(sport=4420, dport=50000 + i, flags="A")),
            erspan2(12, Ether(**MAC) / Dot1Q(vlan=100 + i) / IP(src="10.0.1.9", dst="10.0.2.9")
                    / UDP(sport=9, dport=i)),
            erspan2(21, Ether(**MAC) / IP(src="10.0.2.1", dst="10.0.4.4") / UDP(sport=61000 + i, dport=4789)
                    / VXLAN(vni=5000 + i) / Ether(**MAC) / IP(src="172.16.0.1", dst="172.16.0.2")
                    / TCP(sport=80, dport=40000, flags="PA") / Raw(b"GET / HTTP/1.1\r\n\r\n")),
            erspan3(32, Ether(**MAC) / ARP(psrc="10.0.3.1", pdst=f"10.0.3.{i + 2}")),
            erspan2(41, Ether(src=MAC["src"], dst="01:80:c2:00:00:01")
                    / MACControlClassBasedFlowControl(c3_enabled=1, c3_pause_time=i)),
            Ether(**MAC) / Dot1AD(vlan=7) / Dot1Q(vlan=200 + i) / IP(src="10.0.4.1", dst="10.0.3.1", tos=i * 4 + i % 4)
            / TCP(sport=22, dport=60000 + i, flags="PA") / Raw(b"SSH-2.0-OpenSSH\r\n"),
            Ether(**MAC) / IP(src="10.0.1.1", dst="10.0.1.2") / ICMP() / Raw(b"ping"),
            Ether(**MAC) / IP(src="10.254.0.1", dst="198.51.100.10") / GRE(proto=0x88BE)  # ERSPAN type I
            / roce(0x06, 3000 + i, 0x55),
            Ether(**MAC) / IP(src="10.254.0.1", dst="198.51.100.10")
            / GRE(key_present=1, key=i, seqnum_present=1) / ERSPAN_II(session_id=13) / roce(0x0C, 4000 + i, 0x66),
            erspan2(14, Raw(with_fcs(roce(0x11, 5000 + i, 0x67, aeth=0)))),  # a mirror copy keeping the FCS
        ]
    return frames


def with_fcs(frame: Packet) -> bytes:
    data = bytes(frame)
    return data + struct.pack("<I", zlib.crc32(data))


def tshark_rows(path: Path) -> list[dict[str, list[str]]]:
    command = ["tshark", "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
               "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=/t"]
    for name in FIELDS:
        command += ["-e", name]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in output.splitlines():
        values = line.split("\t")
        rows.append({name: (value.split("|") if value else []) for name, value in zip(FIELDS, values, strict=True)})
    return rows


def _nth(values: list[str], index: int) -> int | None:
    return int(values[index], 0) if index < len(values) else None


def expected_from_tshark(row: dict[str, list[str]]) -> dict[str, object]:
    """The monitored frame's fields as tshark sees them."""
    layers = row["frame.protocols"][0].split(":")
    start = max((i for i, name in enumerate(layers) if name == "erspan"), default=-1)
    ip_at = next((i for i in range(start + 1, len(layers)) if layers[i] in ("ip", "ipv6")), None)
    tags = [i for i in range(start + 1, ip_at if ip_at is not None else len(layers)) if layers[i] == "vlan"]
    want: dict[str, object] = {
        "erspan_session": _nth(row["erspan.spanid"], 0) if row["erspan.spanid"] else -1,  # type I: no session
        "vlan": _nth(row["vlan.id"], layers[: tags[-1]].count("vlan")) if tags else 0,
    }
    if ip_at is None:
        if row["arp.src.proto_ipv4"]:
            want["src"] = ipaddress.ip_address(row["arp.src.proto_ipv4"][0])
            want["dst"] = ipaddress.ip_address(row["arp.dst.proto_ipv4"][0])
        return want
    family = layers[ip_at]
    k = layers[:ip_at].count(family)
    if family == "ip":
        want["dscp"], want["ecn"] = int(row["ip.dsfield.dscp"][k]), int(row["ip.dsfield.ecn"][k])
    else:
        want["dscp"], want["ecn"] = int(row["ipv6.tclass.dscp"][k]), int(row["ipv6.tclass.ecn"][k])
    if "vxlan" in layers[ip_at:]:  # a tenant flow is the flow: the IP layer VXLAN carries, when it carries one
        vxlan_at = layers.index("vxlan", ip_at)
        ip_at = next((i for i in range(vxlan_at + 1, len(layers)) if layers[i] in ("ip", "ipv6")), ip_at)
        family = layers[ip_at]
        k = layers[:ip_at].count(family)
    want["src"] = ipaddress.ip_address(row[f"{family}.src"][k])
    want["dst"] = ipaddress.ip_address(row[f"{family}.dst"][k])
    if family == "ip":
        want["proto"] = int(row["ip.proto"][k])
    l4_at = next((i for i in range(ip_at + 1, len(layers)) if not layers[i].startswith("ipv6.")), None)
    l4 = layers[l4_at] if l4_at is not None else ""
    if l4 in ("tcp", "udp"):
        j = layers[:l4_at].count(l4)
        want["src_port"] = int(row[f"{l4}.srcport"][j])
        want["dst_port"] = int(row[f"{l4}.dstport"][j])
    else:
        want["src_port"] = want["dst_port"] = 0
    want["vni"] = _nth(row["vxlan.vni"], 0) or 0
    if row["infiniband.bth.opcode"]:
        want["bth_opcode"] = _nth(row["infiniband.bth.opcode"], 0)
        want["dqpn"] = _nth(row["infiniband.bth.destqp"], 0)
        want["psn"] = _nth(row["infiniband.bth.psn"], 0)
    return want


def ours(decoded: DecodedPackets, i: int, fields: set[str]) -> dict[str, object]:
    got: dict[str, object] = {}
    for name in fields:
        if name in ("src", "dst"):
            value = (int(getattr(decoded, f"{name}_hi")[i]) << 64) | int(getattr(decoded, f"{name}_lo")[i])
            address = ipaddress.IPv6Address(value)
            got[name] = address.ipv4_mapped or address
        else:
            got[name] = int(getattr(decoded, name)[i])
    return got


def cross_check(path: Path) -> int:
    """Compare every packet; return the number compared, after asserting zero mismatches."""
    topology = load_topology(SAMPLES / "topology.yaml")
    decoder = Decoder(topology)
    reader = open_capture(path)
    decoded = [decoder.decode(batch) for batch in reader]
    assert reader.stats.skipped_total == 0
    rows = tshark_rows(path)
    assert len(rows) == sum(len(d) for d in decoded)
    mismatches = []
    index = 0
    for batch in decoded:
        assert batch.ok.all()
        for i in range(len(batch)):
            want = expected_from_tshark(rows[index])
            got = ours(batch, i, set(want))
            if "bth_opcode" not in want and batch.is_roce[i]:
                got["is_roce"], want["is_roce"] = True, False
            if got != want:
                mismatches.append((index + 1, {k: (got[k], want[k]) for k in want if got[k] != want[k]}))
            index += 1
    assert not mismatches[:20], f"{len(mismatches)} packets differ from tshark"
    return index


@pytest.fixture(scope="module", autouse=True)
def _needs_tshark() -> None:
    require(shutil.which("tshark") is not None, "tshark is required (Debian package tshark; `make system-deps`)",
            everywhere=True)


def test_scapy_mix_matches_tshark(tmp_path: Path) -> None:
    path = tmp_path / "mix.pcap"
    frames = scapy_mix()
    wrpcap(str(path), frames)
    assert cross_check(path) == len(frames)


LINK_HEADERS: dict[int, bytes] = {  # link type -> the bytes before the network header, from each format's spec
    9: b"\xff\x03\x00\x21",  # PPP with HDLC-like framing, IPv4
    12: b"",
    14: b"",
    50: b"\xff\x03\x00\x21",
    101: b"",
    104: b"\x0f\x00\x08\x00",  # Cisco HDLC unicast, IPv4
    113: bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\1\0\0", proto=0x0800)),
    228: b"",
    276: bytes(CookedLinuxV2(proto=0x0800, ifindex=3, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\1\0\0")),
}


def link_datagrams() -> list[Packet]:
    """IPv4 datagrams (BGP among them, as on the Cisco HDLC capture of issue 15) for the link types above."""
    return [
        IP(src="10.0.1.1", dst="10.0.2.2", tos=0x6A) / TCP(sport=179, dport=40000 + i, flags="PA")
        / Raw(b"\xff" * 16 + b"\x00\x13\x04") if i % 2 else
        IP(src="10.0.3.3", dst="10.0.4.4", tos=0x02) / UDP(sport=49152 + i, dport=4791) / BTH(opcode=0x0A, psn=i)
        / Raw(b"\0" * 32)
        for i in range(10)
    ]


@pytest.mark.parametrize("linktype", sorted(LINK_HEADERS))
def test_link_types_match_tshark(tmp_path: Path, linktype: int) -> None:
    path = tmp_path / f"link{linktype}.pcap"
    frames = [Raw(LINK_HEADERS[linktype] + bytes(datagram)) for datagram in link_datagrams()]
    wrpcap(str(path), frames, linktype=linktype)
    assert all(":ip:" in f":{row['frame.protocols'][0]}:" for row in tshark_rows(path))  # tshark opened them too
    assert cross_check(path) == len(frames)


def test_raw_ipv6_link_type_matches_tshark(tmp_path: Path) -> None:
    path = tmp_path / "link229.pcap"
    frames = [Raw(bytes(IPv6(src="fd00::1", dst=f"fd00::{i + 2:x}", tc=0x2A) / TCP(sport=179, dport=50000 + i)))
              for i in range(5)]
    wrpcap(str(path), frames, linktype=229)
    assert all(":ipv6:" in f":{row['frame.protocols'][0]}:" for row in tshark_rows(path))
    assert cross_check(path) == len(frames)


TUNNEL_FIELDS = ("frame.protocols", "ip.src", "ip.dst", "ip.dsfield.dscp", "ip.dsfield.ecn", "ipv6.src", "ipv6.dst",
                 "ipv6.tclass.dscp", "ipv6.tclass.ecn", "tcp.srcport", "tcp.dstport", "tcp.flags", "udp.srcport",
                 "udp.dstport",
                 "gre.key", "geneve.vni", "vxlan.vni", "mpls.label", "erspan.spanid", "infiniband.bth.destqp")
TUNNEL_LAYERS = ("gre", "geneve", "vxlan", "mpls")


def tunnel_frames() -> list[Packet]:
    """Every tunnel the walk opens, mirrored and not: GRE (IPv4, IPv6, transparent Ethernet with a key, MPLS),
    IP-in-IP (4in4, 6in4, 4in6, 6in6), Geneve (Ethernet and IP payloads, with options), VXLAN (IPv4 and IPv6
    tenant flows, over IPv4 and IPv6, mirrored through ERSPAN II, and ARP inside: the outer flow), MPLS over
    Ethernet, RoCE inside a tunnel, and a GRE tunnel mirrored through ERSPAN II."""
    v4 = IP(src="192.0.2.1", dst="192.0.2.99", tos=0x2A)
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::99", tc=0x2A)
    frames: list[Packet] = []
    for i in range(3):
        app = UDP(sport=50000 + i, dport=53 + i) / Raw(b"x" * 20)
        tcp = TCP(sport=179, dport=40000 + i, flags=("PA", "S", "FA")[i]) / Raw(b"\xff" * 16 + b"\x00\x13\x04")
        inner4 = IP(src=f"10.1.0.{i + 1}", dst="10.1.0.200", tos=0xB8)
        inner6 = IPv6(src=f"fd00:1::{i + 1}", dst="fd00:1::200")
        roce = UDP(sport=49152 + i, dport=4791) / BTH(opcode=0x0A, dqpn=0x100 + i, psn=i) / Raw(b"\0" * 32)
        frames += [
            Ether(**MAC) / v4 / GRE(proto=0x0800) / inner4 / app,
            Ether(**MAC) / v4 / GRE(proto=0x86DD) / inner6 / tcp,
            Ether(**MAC) / v4 / GRE(key_present=1, key=0x1000 + i, proto=0x6558) / Ether(**MAC) / inner4 / tcp,
            Ether(**MAC) / v6 / GRE(proto=0x8847) / MPLS(label=3000 + i, s=1) / inner4 / app,
            Ether(**MAC) / v4 / inner4 / roce,
            Ether(**MAC) / v4 / inner6 / app,
            Ether(**MAC) / v6 / inner4 / tcp,
            Ether(**MAC) / v6 / inner6 / roce,
            Ether(**MAC) / v4 / UDP(sport=61000 + i, dport=6081) / GENEVE(vni=0x5000 + i, proto=0x6558)
            / Ether(**MAC) / inner4 / tcp,
            Ether(**MAC) / v4 / UDP(sport=61000 + i, dport=6081)
            / GENEVE(vni=0x6000 + i, proto=0x0800, optionlen=1, options=b"\x01\x02\x03\x04") / inner4 / roce,
            Ether(**MAC) / MPLS(label=100, s=0) / MPLS(label=2000 + i, s=1) / inner4 / app,
            Ether(**MAC) / v4 / UDP(sport=62000 + i, dport=4789) / VXLAN(vni=0x7000 + i) / Ether(**MAC) / inner4 / tcp,
            Ether(**MAC) / v6 / UDP(sport=62000 + i, dport=4789) / VXLAN(vni=0x7100 + i) / Ether(**MAC) / inner6 / app,
            Ether(**MAC) / v4 / UDP(sport=62000 + i, dport=4789) / VXLAN(vni=0x7200 + i) / Ether(**MAC) / inner4 / roce,
            Ether(**MAC) / v4 / UDP(sport=62000 + i, dport=4789) / VXLAN(vni=0x7300 + i) / Ether(**MAC)
            / ARP(psrc="10.1.0.1", pdst="10.1.0.200"),
            Ether(**MAC) / IP(src="10.254.0.1", dst="198.51.100.10") / GRE(seqnum_present=1)
            / ERSPAN_II(session_id=21) / Ether(**MAC) / v4 / UDP(sport=62000 + i, dport=4789)
            / VXLAN(vni=0x7400 + i) / Ether(**MAC) / Dot1Q(vlan=7) / inner6 / tcp,
            Ether(**MAC) / IP(src="10.254.0.1", dst="198.51.100.10") / GRE(seqnum_present=1)
            / ERSPAN_II(session_id=11) / Ether(**MAC) / v4 / GRE(proto=0x0800) / inner4 / roce,
        ]
    return frames


def tunnel_rows(path: Path) -> list[dict[str, list[str]]]:
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
               "-E", "separator=/t"]
    for name in TUNNEL_FIELDS:
        command += ["-e", name]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [{name: (value.split("|") if value else []) for name, value in zip(TUNNEL_FIELDS, line.split("\t"),
                                                                             strict=True)}
            for line in output.splitlines()]


def expected_tunnel_flow(row: dict[str, list[str]]) -> dict[str, object]:
    """As tshark sees it: the flow is the IP header after the last tunnel (GRE, IP-in-IP, Geneve, VXLAN,
    MPLS), its L4 ports and TCP flags; the outer endpoints are the first IP header after any ERSPAN; the
    tunnel id is the innermost GRE key, Geneve or VXLAN VNI or MPLS label; DSCP/ECN are the outer header's
    (the fabric marks it). A tunnel carrying no IP (ARP inside VXLAN) leaves the outer flow as the flow."""
    layers = row["frame.protocols"][0].split(":")
    start = max((i for i, name in enumerate(layers) if name == "erspan"), default=-1)
    ips = [i for i in range(start + 1, len(layers)) if layers[i] in ("ip", "ipv6")]

    def address(at: int, which: str) -> object:
        family = layers[at]
        return ipaddress.ip_address(row[f"{family}.{which}"][layers[:at].count(family)])

    first, key = ips[0], ips[-1]
    l4 = layers[key + 1]
    tunnel_id = 0
    for at in range(start + 1, len(layers)):  # VXLAN carrying no IP still has its VNI in the row
        name = layers[at]
        values = {"gre": row["gre.key"], "geneve": row["geneve.vni"], "vxlan": row["vxlan.vni"],
                  "mpls": row["mpls.label"]}.get(name, [])
        index = layers[:at].count(name) if name != "mpls" else -1  # one mpls layer per stack: its bottom label
        if name in ("gre", "geneve", "vxlan", "mpls") and index < len(values):
            tunnel_id = int(values[index], 0) if name != "gre" or layers[at + 1] != "erspan" else tunnel_id
    family = layers[first]
    prefix = "ip.dsfield" if family == "ip" else "ipv6.tclass"
    want: dict[str, object] = {
        "src": address(key, "src"), "dst": address(key, "dst"),
        "src_port": int(row[f"{l4}.srcport"][layers[: key + 1].count(l4)]),
        "dst_port": int(row[f"{l4}.dstport"][layers[: key + 1].count(l4)]),
        "tcp_flags": int(row["tcp.flags"][layers[: key + 1].count(l4)], 0) if l4 == "tcp" else 0,
        "vni": tunnel_id,
        "dscp": int(row[f"{prefix}.dscp"][layers[:first].count(family)]),
        "ecn": int(row[f"{prefix}.ecn"][layers[:first].count(family)]),
        "outer_src": address(first, "src") if key != first else ipaddress.ip_address("::"),
        "outer_dst": address(first, "dst") if key != first else ipaddress.ip_address("::"),
    }
    if row["infiniband.bth.destqp"]:
        want["dqpn"] = int(row["infiniband.bth.destqp"][0], 0)
    return want


def ours_tunnel(decoded: DecodedPackets, i: int) -> dict[str, object]:
    def address(hi: np.ndarray, lo: np.ndarray) -> object:
        value = ipaddress.IPv6Address((int(hi[i]) << 64) | int(lo[i]))
        return value.ipv4_mapped or value

    got: dict[str, object] = {
        "src": address(decoded.src_hi, decoded.src_lo), "dst": address(decoded.dst_hi, decoded.dst_lo),
        "src_port": int(decoded.src_port[i]), "dst_port": int(decoded.dst_port[i]),
        "tcp_flags": int(decoded.tcp_flags[i]), "vni": int(decoded.vni[i]),
        "dscp": int(decoded.dscp[i]), "ecn": int(decoded.ecn[i]),
        "outer_src": address(decoded.outer_src_hi, decoded.outer_src_lo),
        "outer_dst": address(decoded.outer_dst_hi, decoded.outer_dst_lo),
    }
    if decoded.is_roce[i]:
        got["dqpn"] = int(decoded.dqpn[i])
    return got


def test_tunnels_match_tshark(tmp_path: Path) -> None:
    path = tmp_path / "tunnels.pcap"
    frames = tunnel_frames()
    wrpcap(str(path), frames)
    rows = tunnel_rows(path)
    assert len(rows) == len(frames)
    decoded = Decoder(load_topology(SAMPLES / "topology.yaml")).decode(next(iter(open_capture(path))))
    assert decoded.ok.all()
    mismatches = []
    for i, row in enumerate(rows):
        layers = row["frame.protocols"][0].split(":")
        assert any(layer in TUNNEL_LAYERS for layer in layers) or layers.count("ip") + layers.count("ipv6") > 1
        want, got = expected_tunnel_flow(row), ours_tunnel(decoded, i)
        if got != want:
            mismatches.append((i + 1, row["frame.protocols"][0], {k: (got.get(k), want[k]) for k in want
                                                                 if got.get(k) != want[k]}))
    assert not mismatches, mismatches[:10]
    assert int(decoded.is_roce.sum()) == sum(1 for row in rows if row["infiniband.bth.destqp"]) == 15


def sample_pcaps() -> list[Path]:
    return sorted(SAMPLES.glob("*.pcap"))


def test_samples_exist() -> None:
    """The parametrised check below must not pass vacuously."""
    assert sample_pcaps(), f"no samples/*.pcap under {SAMPLES}"


@pytest.mark.parametrize("path", sample_pcaps(), ids=lambda p: p.name)
def test_sample_matches_tshark(path: Path) -> None:
    assert cross_check(path) > 0
