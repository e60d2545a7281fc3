"""Real protocol messages for the DPI tests, built with scapy, Python's ssl module or by the spec's layout."""

from __future__ import annotations

import contextlib
import ssl
import struct

from hpack import Encoder
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


AUTH_NONE = struct.pack("!II", 0, 0)
PORTMAPPER, MOUNTD, NLM = 100000, 100005, 100021


def xdr_string(text: str) -> bytes:
    """RFC 4506 4.11: length, bytes, zero padding to a multiple of four."""
    data = text.encode()
    return struct.pack("!I", len(data)) + data + bytes(-len(data) % 4)


def rpc_call(xid: int, program: int, version: int, procedure: int, args: bytes = b"") -> bytes:
    """RFC 5531 9 CALL with AUTH_NONE credentials and verifier."""
    return struct.pack("!IIIIII", xid, 0, 2, program, version, procedure) + AUTH_NONE + AUTH_NONE + args


def rpc_reply(xid: int, result: bytes = b"") -> bytes:
    """MSG_ACCEPTED reply, AUTH_NONE verifier, SUCCESS, then the procedure's result."""
    return struct.pack("!III", xid, 1, 0) + AUTH_NONE + struct.pack("!I", 0) + result


def getport_call(xid: int, program: int, version: int, proto: int) -> bytes:
    """RFC 1833 3.2 PMAPPROC_GETPORT (portmapper version 2, procedure 3): mapping (prog, vers, prot, port 0)."""
    return rpc_call(xid, PORTMAPPER, 2, 3, struct.pack("!IIII", program, version, proto, 0))


def getport_reply(xid: int, port: int) -> bytes:
    return rpc_reply(xid, struct.pack("!I", port))


def getaddr_call(xid: int, program: int, version: int, netid: str) -> bytes:
    """RFC 1833 2.2 RPCBPROC_GETADDR (rpcbind version 4, procedure 3): rpcb (prog, vers, netid, addr, owner)."""
    args = struct.pack("!II", program, version) + xdr_string(netid) + xdr_string("") + xdr_string("")
    return rpc_call(xid, PORTMAPPER, 4, 3, args)


def getaddr_reply(xid: int, universal_address: str) -> bytes:
    return rpc_reply(xid, xdr_string(universal_address))


def mount_call(xid: int, path: str = "/export/ckpt") -> bytes:
    """MOUNTPROC3_MNT (RFC 1813 5.2.1): the directory to mount."""
    return rpc_call(xid, MOUNTD, 3, 1, xdr_string(path))


def mount_reply(xid: int) -> bytes:
    """MNT3_OK, a 28-byte file handle and one auth flavor (AUTH_UNIX)."""
    return rpc_reply(xid, struct.pack("!II", 0, 28) + bytes(range(28)) + struct.pack("!II", 1, 1))


def quic_initial(version: int, packet_type: int, size: int = 1200) -> bytes:
    """RFC 9000 17.2.2 Initial long header (8-byte connection IDs, no token, 4-byte packet number), its
    protected payload stood in for by filler bytes, the datagram padded to the 1200 bytes a client sends."""
    first = 0xC0 | (packet_type << 4) | 0x03
    header = struct.pack("!BI", first, version) + b"\x08" + bytes(range(1, 9)) + b"\x08" + bytes(range(9, 17))
    remaining = size - len(header) - 1 - 2
    return header + b"\x00" + struct.pack("!H", 0x4000 | remaining) + bytes((i * 7) % 251 for i in range(remaining))


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GRPC_PATH = "/fabric.Telemetry/Subscribe"


def http2_frame(frame_type: int, flags: int, stream: int, payload: bytes) -> bytes:
    """RFC 9113 4.1 frame: 24-bit length, type, flags, stream identifier."""
    return len(payload).to_bytes(3, "big") + struct.pack("!BBI", frame_type, flags, stream) + payload


def http2_client_preface() -> bytes:
    """A prior-knowledge client's first bytes: the preface, then an empty SETTINGS frame."""
    return HTTP2_PREFACE + http2_frame(0x4, 0, 0, b"")


def http2_headers(fields: list[tuple[str, str]], stream: int = 1) -> bytes:
    """A HEADERS frame (END_HEADERS) whose block hpack encodes as the first of its connection."""
    return http2_frame(0x1, 0x4, stream, Encoder().encode(fields))


def grpc_request_headers() -> bytes:
    return http2_headers([(":method", "POST"), (":scheme", "http"), (":path", GRPC_PATH),
                          (":authority", "collector:50051"), ("content-type", "application/grpc"),
                          ("te", "trailers")])


def grpc_response_headers() -> bytes:
    return http2_headers([(":status", "200"), ("content-type", "application/grpc+proto")])


def h2c_request_headers() -> bytes:
    return http2_headers([(":method", "GET"), (":scheme", "http"), (":path", "/metrics"),
                          (":authority", "leaf1:9100")])


ROCE_CM_QKEY = 0x80010000  # IBTA 13.4.6.2: the well-known Q_Key of the GSI (QP1)
CM_REQ, CM_REP = 0x0010, 0x0013


def rdma_cm_mad(attribute: int, transaction: int = 0x1122334455) -> Packet:
    """A UD SEND_ONLY to QP 1 with a DETH (Q_Key, source QP 1) and a 256-byte CM MAD (IBTA 13.4.3 header:
    BaseVersion 1, MgmtClass 0x07, ClassVersion 2, method Send) whose message is mostly zeros."""
    deth = struct.pack("!IB", ROCE_CM_QKEY, 0) + (1).to_bytes(3, "big")
    mad = struct.pack("!BBBBHHQHHI", 1, 0x07, 2, 0x03, 0, 0, transaction, attribute, 0, 0)
    message = struct.pack("!II", 0x1000_0001, 0) + bytes(224)  # Local Communication ID, reserved
    return udp(BTH(opcode=0x64, dqpn=1, psn=0) / Raw(deth + mad + message), 4791, sport=49152)


def bfd_echo() -> bytes:
    """FRR's echo packet (bfdd/bfd.h struct bfd_echo_pkt): version 1, length 24, the sender's discriminator and
    send time; RFC 5880 6.4 leaves the contents to the sender."""
    return struct.pack("!BBHIQQ", 1, 24, 0, 0x0A0B0C0D, 1_700_000_000, 123_456)


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
    "quic": udp(quic_initial(0x00000001, 0b00), 8443, sport=50000),
    "http2": tcp(http2_client_preface(), 8080),
    "grpc": tcp(grpc_request_headers(), 50051),
    "rdma-cm": rdma_cm_mad(CM_REQ),
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
    ("nfs", udp(mount_call(0x51), 20048, sport=701)),
    ("nfs", tcp(record_marked(rpc_call(0x52, NLM, 4, 0)), 37345, sport=703)),
    ("nfs", udp(getport_call(0x53, MOUNTD, 3, 17), 111, sport=700)),
    ("quic", udp(quic_initial(0x6B3343CF, 0b01), 8443, sport=50000)),
    ("grpc", tcp(grpc_response_headers(), CLIENT_PORT, sport=50051)),
    ("http2", tcp(h2c_request_headers(), 8080)),
    ("rdma-cm", rdma_cm_mad(CM_REP)),
    ("bfd", udp(BFD(), 4784, sport=49999)),
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
    ("bfd", udp(bfd_echo(), 3785, sport=3785)),
    ("quic", udp(b"", 443)),
    ("nfs", udp(b"", 111)),
    ("tls", tcp(b"", CLIENT_PORT, sport=443)),
]
