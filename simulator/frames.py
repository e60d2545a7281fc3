"""Frame builders, one per packet kind, with real header and payload bytes (scapy, called once per
flow and kind; the writer patches per-packet fields afterwards)."""

from __future__ import annotations

import struct

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.ntp import NTPHeader
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from simulator.flows import Flow

ROCE_PORT = 4791
VXLAN_PORT = 4789
IP_TCP = 6
ICRC = b"\x00\x00\x00\x00"
LLDP_MAC = "01:80:c2:00:00:0e"
PAUSE_MAC = "01:80:c2:00:00:01"
ETH_LLDP = 0x88CC
ETH_PAUSE = 0x8808
ETH_ARP = 0x0806
PFC_PRIORITY = 3


def ether(src_mac: str, dst_mac: str, vlan: int, ethertype: int | None = None) -> Packet:
    """Ethernet header, with an 802.1Q tag when `vlan` is set (priority 3 for lossless RoCE)."""
    if vlan:
        tag = Dot1Q(vlan=vlan, prio=3)
        if ethertype is not None:
            tag.type = ethertype
        return Ether(src=src_mac, dst=dst_mac) / tag
    return Ether(src=src_mac, dst=dst_mac) if ethertype is None else Ether(src=src_mac, dst=dst_mac, type=ethertype)


def ip(flow: Flow, tos: int = 0, ttl: int = 64) -> Packet:
    if ":" in flow.src_ip:
        return IPv6(src=flow.src_ip, dst=flow.dst_ip, tc=tos, hlim=ttl)
    return IP(src=flow.src_ip, dst=flow.dst_ip, tos=tos, ttl=ttl, flags="DF", id=0)


def bth(opcode: int, dqpn: int, psn: int, *, ackreq: bool = False, becn: bool = False) -> bytes:
    """InfiniBand Base Transport Header (IBTA vol. 1, 9.2): opcode, SE/M/pad/tver, P_Key, FECN/BECN, dest QP, A, PSN."""
    return struct.pack(">BBHBBHBBH", opcode, 0x40, 0xFFFF, 0x40 if becn else 0, dqpn >> 16, dqpn & 0xFFFF,
                       0x80 if ackreq else 0, psn >> 16, psn & 0xFFFF)


def roce(flow: Flow, src_mac: str, dst_mac: str, opcode: int, transport: bytes) -> tuple[Packet, int]:
    """A RoCEv2 frame (UDP 4791, checksum 0) whose UDP payload `transport` starts with the BTH; returns
    the frame and the BTH offset."""
    ecn = 0 if opcode == 0x81 else 2  # CNPs are not ECN-capable; data and ACKs are ECT(0)
    packet = (ether(src_mac, dst_mac, flow.vlan) / ip(flow, (flow.dscp << 2) | ecn)
              / UDP(sport=flow.src_port, dport=ROCE_PORT, chksum=0) / Raw(transport + ICRC))
    return packet, len(bytes(packet)) - len(transport) - len(ICRC)


def reth(va: int, rkey: int, length: int) -> bytes:
    return struct.pack(">QII", va, rkey, length)


def aeth(msn: int) -> bytes:
    """ACK Extended Transport Header: syndrome 0x1F (ACK, credits not limited) and the MSN."""
    return struct.pack(">I", (0x1F << 24) | (msn & 0xFFFFFF))


def tcp(flow: Flow, src_mac: str, dst_mac: str, payload: bytes, flags: str = "PA", tos: int = 0) -> Packet:
    packet = ether(src_mac, dst_mac, flow.vlan) / ip(flow, tos) / TCP(sport=flow.src_port, dport=flow.dst_port,
                                                                        flags=flags, seq=1, ack=1, window=502)
    return packet / Raw(payload) if payload else packet


def udp(flow: Flow, src_mac: str, dst_mac: str, payload: Packet | bytes, tos: int = 0) -> Packet:
    body = Raw(payload) if isinstance(payload, bytes) else payload
    return ether(src_mac, dst_mac, flow.vlan) / ip(flow, tos) / UDP(sport=flow.src_port, dport=flow.dst_port) / body


def icmp_echo(flow: Flow, src_mac: str, dst_mac: str, reply: bool, payload: bytes) -> Packet:
    echo: Packet
    if ":" in flow.src_ip:
        echo = ICMPv6EchoReply(id=0x77, seq=1) if reply else ICMPv6EchoRequest(id=0x77, seq=1)
    else:
        echo = ICMP(type=0 if reply else 8, id=0x77, seq=1)
    return ether(src_mac, dst_mac, flow.vlan) / ip(flow) / echo / Raw(payload)


def vxlan(outer: Flow, src_mac: str, dst_mac: str, inner: Packet) -> Packet:
    return (ether(src_mac, dst_mac, outer.vlan) / ip(outer)
            / UDP(sport=outer.src_port, dport=VXLAN_PORT, chksum=0) / VXLAN(vni=outer.vni, flags=0x08) / inner)


def nvme_tcp_pdu(pdu_type: int, header: bytes, data: bytes = b"") -> bytes:
    """NVMe/TCP PDU: common header (type, flags, hlen, pdo, plen) + PDU-specific header + data."""
    hlen = 8 + len(header)
    pdo = hlen if data else 0
    return struct.pack("<BBBBI", pdu_type, 0, hlen, pdo, hlen + len(data)) + header + data


def onc_rpc_call(xid: int, proc: int, args: bytes) -> bytes:
    """ONC RPC call to NFSv3 (program 100003) over TCP with its record marker, AUTH_NONE."""
    body = struct.pack(">IIIIIIIIII", xid, 0, 2, 100003, 3, proc, 0, 0, 0, 0) + args
    return struct.pack(">I", 0x80000000 | len(body)) + body


def onc_rpc_reply(xid: int, result: bytes) -> bytes:
    body = struct.pack(">IIIIII", xid, 1, 0, 0, 0, 0) + result
    return struct.pack(">I", 0x80000000 | len(body)) + body


def tls_record(content_type: int, body: bytes) -> bytes:
    return struct.pack(">BHH", content_type, 0x0303, len(body)) + body


def tls_client_hello(sni: str, random: bytes) -> bytes:
    """TLS 1.3 ClientHello with server_name as the first extension (so a short snaplen keeps it)."""
    name = sni.encode()
    server_name = struct.pack(">HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    versions = struct.pack(">HHB", 43, 3, 2) + b"\x03\x04"
    groups = struct.pack(">HHH", 10, 4, 2) + b"\x00\x1d"
    extensions = server_name + versions + groups
    hello = (b"\x03\x03" + random + b"\x00" + struct.pack(">H", 4) + b"\x13\x01\x13\x02" + b"\x01\x00"
             + struct.pack(">H", len(extensions)) + extensions)
    return tls_record(22, struct.pack(">I", (1 << 24) | len(hello)) + hello)


def tls_server_hello(random: bytes) -> bytes:
    extensions = struct.pack(">HHH", 43, 2, 0x0304)
    hello = b"\x03\x03" + random + b"\x00" + b"\x13\x01" + b"\x00" + struct.pack(">H", len(extensions)) + extensions
    return tls_record(22, struct.pack(">I", (2 << 24) | len(hello)) + hello)


def dns_query(name: str, ident: int) -> Packet:
    return DNS(id=ident, rd=1, qd=DNSQR(qname=name))


def dns_answer(name: str, ident: int, address: str) -> Packet:
    return DNS(id=ident, qr=1, aa=1, rd=1, ra=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata=address, ttl=60))


def ntp(mode: int, unix_seconds: float) -> Packet:
    """NTP client (3) or server (4) header; timestamps given, since scapy would stamp the build time."""
    stamp = unix_seconds + 2_208_988_800  # NTP era 0 starts in 1900
    return NTPHeader(mode=mode, stratum=0 if mode == 3 else 2, ref_id=b"GPS\x00" if mode == 4 else b"\x00" * 4,
                     ref=stamp if mode == 4 else 0, orig=stamp if mode == 4 else 0, recv=stamp if mode == 4 else 0,
                     sent=stamp)


def ptp(message_type: int, sequence: int) -> bytes:
    """PTPv2 message: 34-byte common header + a 10-byte timestamp (Sync, Delay_Req, Follow_Up, Delay_Resp)."""
    length = 54 if message_type == 9 else 44
    control = {0: 0, 1: 1, 8: 2, 9: 3}[message_type]
    header = struct.pack(">BBHBBHQIQHHBb", message_type, 2, length, 0, 0, 0, 0, 0, 0x0200_00FF_FE00_0001, 1,
                         sequence, control, 0)
    body = bytes(10) if message_type != 9 else bytes(10) + struct.pack(">QH", 0x0200_00FF_FE00_0002, 1)
    return header + body


def ssh_packet(payload: bytes) -> bytes:
    """SSH binary packet (RFC 4253 section 6) before encryption: length, padding length, payload, padding."""
    padding = 8 - (5 + len(payload)) % 8
    padding += 8 if padding < 4 else 0
    return struct.pack(">IB", 1 + len(payload) + padding, padding) + payload + bytes(padding)


def ssh_kexinit(cookie: bytes) -> bytes:
    """SSH_MSG_KEXINIT with one algorithm per list, so the dissector follows the key exchange."""
    lists = [b"curve25519-sha256", b"ssh-ed25519", b"chacha20-poly1305@openssh.com",
             b"chacha20-poly1305@openssh.com", b"umac-64-etm@openssh.com", b"umac-64-etm@openssh.com",
             b"none", b"none", b"", b""]
    body = b"".join(struct.pack(">I", len(name)) + name for name in lists)
    return ssh_packet(b"\x14" + cookie + body + b"\x00" + bytes(4))


def bgp_keepalive() -> bytes:
    return b"\xff" * 16 + struct.pack(">HB", 19, 4)


def bfd_control(my_disc: int, your_disc: int) -> bytes:
    """BFD v1 control packet, state Up, detect multiplier 3, 300 ms intervals."""
    return struct.pack(">BBBBIIIII", 0x20, 0xC0, 3, 24, my_disc, your_disc, 300_000, 300_000, 0)


def lldp(src_mac: str, chassis: str, port: str) -> Packet:
    """LLDPDU with chassis id (MAC), port id (interface name), TTL 120 and end TLVs."""
    mac = bytes.fromhex(src_mac.replace(":", ""))

    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack(">H", (kind << 9) | len(value)) + value

    body = (tlv(1, b"\x04" + mac) + tlv(2, b"\x05" + port.encode()) + tlv(3, struct.pack(">H", 120))
            + tlv(5, chassis.encode()) + tlv(0, b""))
    return Ether(src=src_mac, dst=LLDP_MAC, type=ETH_LLDP) / Raw(body)


def arp(src_mac: str, dst_mac: str, sender: str, target: str, reply: bool) -> Packet:
    return Ether(src=src_mac, dst=dst_mac) / ARP(op=2 if reply else 1, hwsrc=src_mac, psrc=sender,
                                                 hwdst=dst_mac if reply else "00:00:00:00:00:00", pdst=target)


def pfc_pause(src_mac: str, quanta: int) -> Packet:
    """802.1Qbb PFC frame: MAC control opcode 0x0101, class-enable vector, 8 per-priority quanta."""
    times = [quanta if priority == PFC_PRIORITY else 0 for priority in range(8)]
    body = struct.pack(">HH8H", 0x0101, 1 << PFC_PRIORITY, *times)
    return Ether(src=src_mac, dst=PAUSE_MAC, type=ETH_PAUSE) / Raw(body)
