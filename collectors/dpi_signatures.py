"""Payload signatures and port fallbacks of the DPI labels (DESIGN.md section 6), one vectorised test each.

Confidence says how much of the protocol a match checked: several consistent header fields (CERTAIN), a
structure that needs the well-known port to be believable (LIKELY), one short record header (PLAUSIBLE);
a port alone, with no payload evidence, is only PORT_ONLY. Signatures whose structure is weak (DNS, NTP,
PTP, BFD, iSCSI, NFS replies, TCPStore queries) only count on their well-known ports. ONC RPC lives in
collectors.dpi_rpc and HTTP/2 header blocks in collectors.dpi_http2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from collectors.dpi_details import quic_version, server_name, ssh_software
from collectors.dpi_payload import TCP, UDP, PayloadHead, one_of
from collectors.dpi_rpc import PORTMAPPER_PORT, rpc_call, rpc_program_names, rpc_reply, rpc_reply_names
from pipeline.labels import APP_CODE

CERTAIN = np.float32(1.0)
LIKELY = np.float32(0.9)
HANDSHAKE = np.float32(0.8)
PLAUSIBLE = np.float32(0.7)
PORT_ONLY = np.float32(0.5)


@dataclass(frozen=True, slots=True)
class Signature:
    """A payload test for one label; `detail` extracts app_detail from the captured payload of a matching row
    (Python, for signatures that match rarely), `details` computes it over the heads as a column."""

    app: str
    confidence: np.float32
    test: Callable[[PayloadHead], np.ndarray]
    detail: Callable[[bytes], str] | None = None
    details: Callable[[PayloadHead], np.ndarray] | None = None  # app_detail of every head at once (object array)


TLS_HANDSHAKE = one_of(0x16)
TLS_OTHER_RECORDS = one_of(0x14, 0x15, 0x16)  # change_cipher_spec, alert, handshake
TLS_APPLICATION_DATA = one_of(0x17)


def _tls_record(p: PayloadHead, content_types: np.ndarray) -> np.ndarray:
    """TLS record header: content type, version 0x0301-0x0304, a length a record may have (RFC 8446 5.1)."""
    length = p.u16(3)
    return (
        p.has(5)
        & content_types[p.u8(0)]
        & (p.u8(1) == 3)
        & (p.u8(2) >= 1)
        & (p.u8(2) <= 4)
        & (length >= 1)
        & (length <= 2**14 + 2048)
    )


def _tls_hello(p: PayloadHead, handshake_type: int) -> np.ndarray:
    """A handshake record opening with a hello whose length fits the record and whose legacy_version is TLS."""
    return (
        _tls_record(p, TLS_HANDSHAKE)
        & p.has(11)
        & (p.u8(5) == handshake_type)
        & (p.u24(6) >= 38)
        & (p.u24(6) + 4 <= p.u16(3))
        & (p.u8(9) == 3)
        & (p.u8(10) <= 4)
    )


def tls_client_hello(p: PayloadHead) -> np.ndarray:
    return _tls_hello(p, 0x01)


def tls_server_hello(p: PayloadHead) -> np.ndarray:
    return _tls_hello(p, 0x02)


def tls_other_record(p: PayloadHead) -> np.ndarray:
    """ChangeCipherSpec, alert or a later (often encrypted) handshake record."""
    return _tls_record(p, TLS_OTHER_RECORDS)


def tls_application_data(p: PayloadHead) -> np.ndarray:
    return _tls_record(p, TLS_APPLICATION_DATA)


def ssh_banner(p: PayloadHead) -> np.ndarray:
    """RFC 4253 4.2 identification string: "SSH-protoversion-", protoversion 2.0 (or 1.99 for old servers)."""
    return p.equals(0, b"SSH-2.0-") | p.equals(0, b"SSH-1.99-")


def bgp_message(p: PayloadHead) -> np.ndarray:
    """RFC 4271 4.1: 16-byte all-ones marker, length 19..4096 (65535 with RFC 8654), type OPEN..ROUTE-REFRESH."""
    return p.equals(0, b"\xff" * 16) & p.has(19) & (p.u16(16) >= 19) & (p.u8(18) >= 1) & (p.u8(18) <= 5)


HTTP_METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT")


def http_request(p: PayloadHead) -> np.ndarray:
    """RFC 9112 3.2 request line: a method, one space, then a request target in one of its forms — origin
    ('/'), asterisk ('*', OPTIONS), absolute ('http://' or 'https://') or authority (host, CONNECT only). Any
    other scheme is another protocol's request line: SIP's `OPTIONS sip:bob@host SIP/2.0` is not HTTP."""
    found = np.zeros(len(p), dtype=bool)
    for method in HTTP_METHODS:
        start = len(method) + 1
        target = p.u8(start)
        target_ok = (target == ord("/")) | p.equals(start, b"http://") | p.equals(start, b"https://")
        if method == b"OPTIONS":
            target_ok |= target == ord("*")
        if method == b"CONNECT":
            lower = target | 0x20
            target_ok |= ((lower >= ord("a")) & (lower <= ord("z"))) | ((target >= ord("0")) & (target <= ord("9")))
        found |= p.equals(0, method + b" ") & p.has(start + 1) & target_ok
    return found


def http_response(p: PayloadHead) -> np.ndarray:
    """Status line "HTTP/1.x ddd"."""
    digits = np.ones(len(p), dtype=bool)
    for i in (9, 10, 11):
        digits &= (p.u8(i) >= ord("0")) & (p.u8(i) <= ord("9"))
    minor = p.u8(7)
    return p.equals(0, b"HTTP/1.") & p.has(12) & ((minor == ord("0")) | (minor == ord("1"))) & (p.u8(8) == 32) & digits


# NVMe/TCP 1.0 section 3.6.2: the fixed header length (HLEN) of each PDU type.
NVME_TCP_HLEN = np.zeros(256, dtype=np.uint8)
NVME_TCP_HLEN[[0x00, 0x01]] = 128  # ICReq, ICResp
NVME_TCP_HLEN[[0x02, 0x03, 0x05, 0x06, 0x07, 0x09]] = 24  # H2CTermReq, C2HTermReq, CapsuleResp, H2CData, C2HData, R2T
NVME_TCP_HLEN[0x04] = 72  # CapsuleCmd


def nvme_tcp_pdu(p: PayloadHead) -> np.ndarray:
    """PDU common header: known type, its HLEN, flags in the defined bits, PDO 0 or past the header, PLEN ≥ both."""
    pdu_type, flags, hlen, pdo = p.u8(0), p.u8(1), p.u8(2), p.u8(3)
    plen = p.u32le(4)
    expected = NVME_TCP_HLEN[pdu_type]
    initialize = pdu_type <= 0x01
    return (
        p.has(8)
        & (expected != 0)
        & (hlen == expected)
        & ((flags & 0xF0) == 0)
        & ((pdo == 0) | (pdo >= hlen))
        & (plen >= hlen)
        & (plen >= pdo)
        & (plen <= 2**24)
        & (~initialize | ((plen == 128) & (pdo == 0)))
    )


# RFC 7143 11.1: BHS opcodes an initiator (0x00-0x06, 0x10, 0x1C-0x1E) or a target (0x20-0x26, 0x31, 0x32,
# 0x3C-0x3F) may send.
ISCSI_OPCODES = one_of(*range(0x00, 0x07), 0x10, 0x1C, 0x1D, 0x1E, *range(0x20, 0x27), 0x31, 0x32, *range(0x3C, 0x40))
ISCSI_BHS_LEN = 48


def iscsi_bhs(p: PayloadHead) -> np.ndarray:
    """A whole 48-byte BHS on port 3260 with a defined opcode, no immediate bit on target PDUs, and AHS only on
    a SCSI Command (extended CDBs)."""
    first = p.u8(0)
    opcode = first & 0x3F
    target_pdu = opcode >= 0x20
    ahs_words = p.u8(4)
    return (
        p.on_port(TCP, 3260)
        & p.has(ISCSI_BHS_LEN)
        & ((first & 0x80) == 0)
        & ISCSI_OPCODES[opcode]
        & (~target_pdu | ((first & 0x40) == 0))
        & ((ahs_words == 0) | ((opcode == 0x01) & (ahs_words <= 64)))
    )


# torch/csrc/distributed/c10d TCPStore: a client opens with QueryType VALIDATE (0) and the uint32 magic
# 0x3C85F7CE in host (little-endian) order; every later query is a QueryType byte followed by uint64 lengths.
TCPSTORE_MAGIC = 0x3C85F7CE
TCPSTORE_KEYED_QUERIES = one_of(1, 2, 3, 4, 8, 9, 14, 15, 16)  # SET, COMPARE_SET, GET, ADD, DELETE_KEY, APPEND, QUEUE_*
TCPSTORE_LISTED_QUERIES = one_of(5, 6, 10, 11)  # CHECK, WAIT, MULTI_GET, MULTI_SET: a key count, then keys
TCPSTORE_MAX_KEY = 4096


def tcpstore_validate(p: PayloadHead) -> np.ndarray:
    return (p.proto == TCP) & p.has(5) & (p.u8(0) == 0) & (p.u32le(1) == TCPSTORE_MAGIC)


def tcpstore_query(p: PayloadHead) -> np.ndarray:
    """On port 29500: a keyed query with a short printable key, or a key list whose first key is short."""
    first_length = p.u64le_small(1)
    short = (first_length >= 1) & (first_length <= TCPSTORE_MAX_KEY)
    key_start = p.u8(9)
    keyed = TCPSTORE_KEYED_QUERIES[p.u8(0)] & short & p.has(10) & (key_start >= 0x20) & (key_start < 0x7F)
    second_length = p.u64le_small(9)
    listed = (
        TCPSTORE_LISTED_QUERIES[p.u8(0)]
        & short
        & p.has(17)
        & (second_length >= 1)
        & (second_length <= TCPSTORE_MAX_KEY)
    )
    return p.on_port(TCP, 29500) & (keyed | listed)


DNS_OPCODES = one_of(0, 1, 2, 4, 5)  # QUERY, IQUERY, STATUS, NOTIFY, UPDATE


def _dns_header(p: PayloadHead, base: int) -> np.ndarray:
    """RFC 1035 4.1.1: a defined opcode, Z clear, a defined RCODE and one question (every real message has one)."""
    flags = p.u16(base + 2)
    return (
        p.has(base + 12)
        & DNS_OPCODES[(flags >> 11) & 0xF]
        & ((flags & 0x0040) == 0)
        & ((flags & 0xF) <= 10)
        & (p.u16(base + 4) == 1)
    )


def dns_message(p: PayloadHead) -> np.ndarray:
    over_udp = p.on_port(UDP, 53) & _dns_header(p, 0)
    over_tcp = p.on_port(TCP, 53) & p.has(2) & (p.u16(0) >= 12) & _dns_header(p, 2)
    return over_udp | over_tcp


def ntp_packet(p: PayloadHead) -> np.ndarray:
    """RFC 5905 7.3: version 3 or 4, an association mode 1-5, stratum ≤ 16, poll ≤ 17, precision -32..0."""
    first = p.u8(0)
    version = (first >> 3) & 0x7
    mode = first & 0x7
    precision = p.u8(3).view(np.int8)
    return (
        p.on_port(UDP, 123)
        & p.has(4)
        & ((version == 3) | (version == 4))
        & (mode >= 1)
        & (mode <= 5)
        & (p.u8(1) <= 16)
        & (p.u8(2) <= 17)
        & (precision >= -32)
        & (precision <= 0)
    )


PTP_MESSAGE_TYPES = one_of(0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB, 0xC, 0xD)  # IEEE 1588-2019 table 36
PTP_HEADER_LEN = 34


def ptp_message(p: PayloadHead) -> np.ndarray:
    """IEEE 1588 common header: a defined messageType, versionPTP 2, messageLength covering the header,
    reserved flag bits clear."""
    length = p.u16(2)
    return (
        p.on_port(UDP, 319, 320)
        & p.has(8)
        & PTP_MESSAGE_TYPES[p.u8(0) & 0x0F]
        & ((p.u8(1) & 0x0F) == 2)
        & (length >= PTP_HEADER_LEN)
        & (length <= 9000)
        & ((p.u8(6) & 0x98) == 0)
        & ((p.u8(7) & 0x80) == 0)
    )


BFD_CONTROL_LEN = 24


def bfd_control(p: PayloadHead) -> np.ndarray:
    """RFC 5880 4.1: version 1, a defined diagnostic, P and F not both set, M clear, detect multiplier ≥ 1,
    length 24 (more only with auth), a discriminator of our own, and the peer's unless the session is down."""
    first, flags, length = p.u8(0), p.u8(1), p.u8(3)
    authenticated = (flags & 0x04) != 0
    down = (flags >> 6) <= 1
    return (
        p.on_port(UDP, 3784, 4784)
        & p.has(BFD_CONTROL_LEN)
        & ((first >> 5) == 1)
        & ((first & 0x1F) <= 8)
        & ((flags & 0x30) != 0x30)
        & ((flags & 0x01) == 0)
        & (p.u8(2) >= 1)
        & ((length == BFD_CONTROL_LEN) | (authenticated & (length > BFD_CONTROL_LEN)))
        & (p.u32(4) != 0)
        & (down | (p.u32(8) != 0))
    )


# RFC 9000 15 and RFC 9369 3.1: the versions whose Initial packets we know, and the long-header packet type
# of an Initial in each (version 2 renumbered the types).
QUIC_INITIAL_TYPES = {0x00000001: 0b00, 0x6B3343CF: 0b01}
QUIC_MAX_CID = 20


def quic_initial(p: PayloadHead) -> np.ndarray:
    """RFC 9000 17.2.2: a long header (form and fixed bits set) of type Initial for its version, and a
    destination connection ID of at most 20 bytes."""
    first = p.u8(0)
    version = p.u32(1)
    initial = np.zeros(len(p), dtype=bool)
    for known, packet_type in QUIC_INITIAL_TYPES.items():
        initial |= (version == known) & (((first >> 4) & 0b11) == packet_type)
    return (p.proto == UDP) & p.has(6) & ((first & 0xC0) == 0xC0) & initial & (p.u8(5) <= QUIC_MAX_CID)


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 3.4, what a prior-knowledge client sends first


def http2_preface(p: PayloadHead) -> np.ndarray:
    return (p.proto == TCP) & p.equals(0, HTTP2_PREFACE)


# Registry, strongest evidence first: a row takes the first label of highest confidence that matches.
SIGNATURES: tuple[Signature, ...] = (
    Signature("tls", CERTAIN, tls_client_hello, server_name),
    Signature("tls", CERTAIN, tls_server_hello),
    Signature("ssh", CERTAIN, ssh_banner, ssh_software),
    Signature("bgp", CERTAIN, bgp_message),
    Signature("nfs", CERTAIN, rpc_call, details=rpc_program_names),
    Signature("quic", CERTAIN, quic_initial, quic_version),
    Signature("torch-c10d", CERTAIN, tcpstore_validate),
    Signature("http", CERTAIN, http_response),
    Signature("bfd", CERTAIN, bfd_control),
    Signature("nvme-tcp", LIKELY, nvme_tcp_pdu),
    Signature("iscsi", LIKELY, iscsi_bhs),
    Signature("nfs", LIKELY, rpc_reply, details=rpc_reply_names),
    Signature("http2", LIKELY, http2_preface),
    Signature("torch-c10d", LIKELY, tcpstore_query),
    Signature("http", LIKELY, http_request),
    Signature("dns", LIKELY, dns_message),
    Signature("ntp", LIKELY, ntp_packet),
    Signature("ptp", LIKELY, ptp_message),
    Signature("tls", HANDSHAKE, tls_other_record),
    Signature("tls", PLAUSIBLE, tls_application_data),
)

# Well-known ports: the fallback when the payload is absent, truncated or mid-stream.
PORTS: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("rocev2", UDP, (4791,)),
    ("torch-c10d", TCP, (29500,)),
    ("nvme-tcp", TCP, (4420, 8009)),
    ("iscsi", TCP, (3260,)),
    ("nfs", TCP, (2049,)),
    ("nfs", UDP, (2049,)),
    ("nfs", TCP, (PORTMAPPER_PORT,)),
    ("nfs", UDP, (PORTMAPPER_PORT,)),
    ("quic", UDP, (443,)),
    ("tls", TCP, (443,)),
    ("http", TCP, (80,)),
    ("ssh", TCP, (22,)),
    ("bgp", TCP, (179,)),
    ("bfd", UDP, (3784, 3785, 4784)),  # control, echo (RFC 5881 4; contents are the sender's own), multihop
    ("dns", UDP, (53,)),
    ("dns", TCP, (53,)),
    ("ntp", UDP, (123,)),
    ("ptp", UDP, (319, 320)),
)


def _port_tables() -> dict[int, np.ndarray]:
    """Per L4 protocol, a 65536-entry app code table indexed by port."""
    tables = {TCP: np.zeros(65536, dtype=np.uint8), UDP: np.zeros(65536, dtype=np.uint8)}
    for app, proto, ports in PORTS:
        tables[proto][list(ports)] = APP_CODE[app]
    return tables


PORT_TABLES = _port_tables()

ETHERTYPES: dict[int, str] = {0x0806: "arp", 0x88CC: "lldp"}
MAC_CONTROL = 0x8808
ICMP_PROTOCOLS = one_of(1, 58)


# RDMA CM over RoCEv2: the GSI's MADs ride UD SEND_ONLY packets to QP 1, the MAD after the BTH and the DETH.
GSI_QP = 1
UD_SEND_ONLY = 0x64
MAD_OFFSET = 12 + 8  # BTH, DETH
CM_CLASS = 0x07  # IBTA 13.4.4 management class of Communication Management
CM_METHODS = one_of(0x01, 0x02, 0x03, 0x81)  # Get, Set, Send, GetResp (IBTA 12.6, 13.4.5)
CM_ATTRIBUTES: dict[int, str] = {  # IBTA 12.6 table 99: the message each attribute carries
    0x0001: "ClassPortInfo", 0x0010: "REQ", 0x0011: "MRA", 0x0012: "REJ", 0x0013: "REP", 0x0014: "RTU",
    0x0015: "DREQ", 0x0016: "DREP", 0x0017: "SIDR_REQ", 0x0018: "SIDR_REP", 0x0019: "LAP", 0x001A: "APR",
}
CM_ATTRIBUTE_NAMES = np.full(65536, "", dtype=object)
CM_ATTRIBUTE_NAMES[list(CM_ATTRIBUTES)] = list(CM_ATTRIBUTES.values())


def cm_mad(p: PayloadHead) -> np.ndarray:
    """IBTA 13.4.3 MAD common header: BaseVersion 1, the CM class at ClassVersion 2, a method CM uses and a CM
    attribute."""
    return (
        p.has(18)
        & (p.u8(0) == 1)
        & (p.u8(1) == CM_CLASS)
        & (p.u8(2) == 2)
        & CM_METHODS[p.u8(3)]
        & (CM_ATTRIBUTE_NAMES[p.u16(16)] != "")
    )
