"""Real protocol messages for the DPI tests, built with scapy, Python's ssl module or by the spec's layout."""

from __future__ import annotations

import contextlib
import ssl
import struct

from scapy.contrib.bfd import BFD
from scapy.contrib.bgp import BGPHeader
from scapy.contrib.lldp import LLDPDUChassisID, LLDPDUEndOfLLDPDU, LLDPDUPortID, LLDPDUTimeToLive
from scapy.contrib.mac_control import MACControlClassBasedFlowControl
from scapy.contrib.roce import BTH, CNP_OPCODE
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.layers.ntp import NTP
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

CLIENT_PORT = 40123
SERVER_NAME = "ckpt-store.pod1.example.com"


def tcp(payload: bytes, dport: int, sport: int = CLIENT_PORT) -> Packet:
    frame = Ether() / IP(src="10.0.1.5", dst="10.0.2.7") / TCP(sport=sport, dport=dport, flags="PA")
    return frame / Raw(payload) if payload else frame


def udp(payload: bytes | Packet, dport: int, sport: int = CLIENT_PORT) -> Packet:
    frame = Ether() / IP(src="10.0.1.5", dst="10.0.2.7") / UDP(sport=sport, dport=dport)
    return frame / payload if payload else frame


def vxlan(inner: Packet, vni: int = 5001) -> Packet:
    """`inner` (an Ethernet frame) carried over VXLAN between two leaf VTEPs."""
    return Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=51234, dport=4789) / VXLAN(vni=vni) / inner


def client_hello(server_name: str = SERVER_NAME) -> bytes:
    """The first TLS record OpenSSL sends for a connection to `server_name`."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        connection.do_handshake()
    return outgoing.read()


def server_hello() -> bytes:
    """RFC 8446 4.1.3 ServerHello (TLS 1.2 form: no extensions) in one handshake record."""
    body = b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x13\x01" + b"\x00"
    handshake = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + len(handshake).to_bytes(2, "big") + handshake


def tls_application_data() -> bytes:
    return b"\x17\x03\x03\x00\x20" + bytes(range(100, 132))


def tcpstore_validate() -> bytes:
    """What a torch TCPStore client sends first: QueryType VALIDATE and the magic, little-endian."""
    return b"\x00" + struct.pack("<I", 0x3C85F7CE)


def tcpstore_set(key: bytes = b"/default_pg/0//cuda//0", value: bytes = b"\x01\x02") -> bytes:
    """QueryType SET, then key and value each as a uint64 length and the bytes."""
    return b"\x01" + struct.pack("<Q", len(key)) + key + struct.pack("<Q", len(value)) + value


def nvme_tcp_icreq() -> bytes:
    """NVMe/TCP 1.0 ICReq: common header (type 0, flags 0, HLEN 128, PDO 0, PLEN 128), PFV 0, HPDA, MAXR2T."""
    header = struct.pack("<BBBBI", 0x00, 0x00, 128, 0, 128)
    return header + struct.pack("<HBBI", 0, 0, 0, 15) + bytes(128 - 16)


def nvme_tcp_capsule_cmd() -> bytes:
    """CapsuleCmd with a 64-byte submission queue entry (READ, opcode 0x02) and no in-capsule data."""
    sqe = bytes([0x02]) + bytes(63)
    return struct.pack("<BBBBI", 0x04, 0x00, 72, 0, 72) + sqe


def iscsi_login_request() -> bytes:
    """RFC 7143 11.12 Login Request BHS (immediate, opcode 0x03, T=1 CSG=1 NSG=3) and its key=value data."""
    data = b"InitiatorName=iqn.2024-01.com.example:host1\x00"
    bhs = (
        bytes([0x43, 0x87, 0x00, 0x00, 0x00])
        + len(data).to_bytes(3, "big")
        + bytes.fromhex("400001370000")  # ISID
        + b"\x00\x00"  # TSIH
        + struct.pack("!I", 1)  # ITT
        + b"\x00\x01\x00\x00"  # CID, reserved
        + struct.pack("!II", 1, 0)  # CmdSN, ExpStatSN
        + bytes(16)
    )
    return bhs + data + bytes(-len(data) % 4)


def rpc_nfs_call() -> bytes:
    """RFC 5531 CALL of NFSv3 (program 100003, version 3) NULL with AUTH_NONE credentials and verifier."""
    return struct.pack("!IIIIIIIIII", 0x1234ABCD, 0, 2, 100003, 3, 0, 0, 0, 0, 0)


def rpc_nfs_reply() -> bytes:
    """Accepted SUCCESS reply to that call."""
    return struct.pack("!IIIIII", 0x1234ABCD, 1, 0, 0, 0, 0)


def record_marked(message: bytes) -> bytes:
    """RFC 5531 11 record marking: last-fragment bit and length."""
    return struct.pack("!I", 0x80000000 | len(message)) + message


def ptp_sync() -> bytes:
    """IEEE 1588-2019 Sync: 34-byte header (messageType 0, versionPTP 2, messageLength 44), originTimestamp."""
    clock_identity, port_number, sequence_id = bytes.fromhex("020000fffe000001"), 1, 42
    header = struct.pack(
        "!BBHBBHq4s8sHHBb", 0x00, 0x02, 44, 0, 0, 0x0200, 0, bytes(4), clock_identity, port_number, sequence_id, 0, 0
    )
    return header + (1_700_000_000).to_bytes(6, "big") + (500).to_bytes(4, "big")


def dns_query() -> bytes:
    return bytes(DNS(id=7, rd=1, qd=DNSQR(qname="ckpt.pod1.example.com")))


FRAMES_BY_PAYLOAD: dict[str, Packet] = {
    "rocev2": udp(BTH(opcode=0x0A, dqpn=0x11, psn=5) / Raw(bytes(64)), 4791, sport=49152),
    "rocev2-cnp": udp(BTH(opcode=CNP_OPCODE, dqpn=0x11) / Raw(bytes(16)), 4791, sport=49152),
    "torch-c10d": tcp(tcpstore_validate(), 29500),
    "nvme-tcp": tcp(nvme_tcp_icreq(), 4420),
    "iscsi": tcp(iscsi_login_request(), 3260),
    "nfs": tcp(record_marked(rpc_nfs_call()), 2049, sport=900),
    "tls": tcp(client_hello(), 443),
    "http": tcp(b"GET /v1/models HTTP/1.1\r\nHost: inference\r\n\r\n", 8080),
    "ssh": tcp(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", 22),
    "bgp": tcp(bytes(BGPHeader(type=4)), 179),
    "bfd": udp(BFD(), 3784, sport=49999),
    "lldp": Ether(dst="01:80:c2:00:00:0e")
    / LLDPDUChassisID(subtype=4, id="02:00:00:00:00:01")
    / LLDPDUPortID(subtype=5, id="Ethernet49")
    / LLDPDUTimeToLive(ttl=120)
    / LLDPDUEndOfLLDPDU(),
    "pfc": Ether(dst="01:80:c2:00:00:01") / MACControlClassBasedFlowControl(c3_enabled=1, c3_pause_time=0xFFFF),
    "arp": Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.1.5", pdst="10.0.1.1"),
    "dns": udp(dns_query(), 53),
    "ntp": udp(NTP(), 123, sport=123),
    "ptp": udp(ptp_sync(), 319, sport=319),
    "icmp": Ether() / IP(src="10.0.1.5", dst="10.0.2.7") / ICMP(),
}

# More messages each signature must know, beyond the first one above.
MORE_FRAMES_BY_PAYLOAD: list[tuple[str, Packet]] = [
    ("torch-c10d", tcp(tcpstore_set(), 29500)),
    ("nvme-tcp", tcp(nvme_tcp_capsule_cmd(), 4420)),
    ("nfs", udp(rpc_nfs_call(), 2049, sport=800)),
    ("nfs", tcp(record_marked(rpc_nfs_reply()), CLIENT_PORT, sport=2049)),
    ("tls", tcp(server_hello(), CLIENT_PORT, sport=443)),
    ("http", tcp(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", CLIENT_PORT, sport=8080)),
    ("http", tcp(b"OPTIONS * HTTP/1.1\r\n\r\n", 8080)),
    ("dns", tcp(len(dns_query()).to_bytes(2, "big") + dns_query(), 53)),
    ("icmp", Ether() / IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest()),
]

# Well-known ports with no payload at all: only the port can speak.
PORT_ONLY_FRAMES: list[tuple[str, Packet]] = [
    ("rocev2", udp(b"", 4791, sport=49152)),
    ("torch-c10d", tcp(b"", 29500)),
    ("nvme-tcp", tcp(b"", 4420)),
    ("iscsi", tcp(b"", 3260)),
    ("nfs", tcp(b"", 2049)),
    ("tls", tcp(b"", 443)),
    ("http", tcp(b"", 80)),
    ("ssh", tcp(b"", 22)),
    ("bgp", tcp(b"", 179)),
    ("bfd", udp(b"", 3784)),
    ("dns", udp(b"", 53)),
    ("ntp", udp(b"", 123)),
    ("ptp", udp(b"", 320)),
    ("tls", tcp(b"", CLIENT_PORT, sport=443)),
]
