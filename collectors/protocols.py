"""Protocol numbers, ports and the one RoCEv2 opcode table the decoder, DPI and flow table share, built once at
import. Header layouts (offsets, sizes) live in collectors.header_table."""

from __future__ import annotations

import numpy as np

# EtherTypes
ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100
ETH_IPV6 = 0x86DD
ETH_MAC_CONTROL = 0x8808  # PFC pause frames
ETH_ERSPAN_II = 0x88BE  # GRE protocol type; type I when the GRE sequence bit is clear
ETH_ERSPAN_III = 0x22EB
ETH_MPLS = 0x8847
ETH_MPLS_MULTICAST = 0x8848
ETH_TEB = 0x6558  # GRE payload: transparent Ethernet bridging
MAX_VLAN_TAGS = 4
MAX_MPLS_LABELS = 8

# Link types (libpcap LINKTYPE_*) the walk opens; every other one is reported as unsupported
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW_DLT12 = 12  # DLT_RAW on some BSDs, raw IPv4/IPv6
LINKTYPE_RAW_DLT14 = 14  # DLT_RAW on BSD/OS
LINKTYPE_PPP_HDLC = 50
LINKTYPE_RAW = 101
LINKTYPE_CISCO_HDLC = 104
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPES = (
    LINKTYPE_ETHERNET, LINKTYPE_PPP, LINKTYPE_RAW_DLT12, LINKTYPE_RAW_DLT14, LINKTYPE_PPP_HDLC, LINKTYPE_RAW,
    LINKTYPE_CISCO_HDLC, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2,
)
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
PPP_MPLS = 0x0281
PPP_ADDRESS_CONTROL = 0xFF03  # HDLC-like framing's all-stations address and UI control (RFC 1662)

PFC_OPCODE = 0x0101  # MAC control: class-based flow control (802.1Qbb)

# IP protocols
IP_ICMP = 1
IP_TCP = 6
IP_UDP = 17
IP_IPIP = 4  # IPv4 in IP
IP_IPV6 = 41  # IPv6 in IP
IP_GRE = 47
IP_ICMPV6 = 58
IPV6_HOP_BY_HOP = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_DEST_OPTIONS = 60
MAX_IPV6_EXTENSIONS = 8

# UDP ports
UDP_VXLAN = 4789
UDP_ROCEV2 = 4791
UDP_GENEVE = 6081

# GRE flags (RFC 2784/2890) and ERSPAN (draft-foschiano-erspan)
GRE_CHECKSUM = 0x8000
GRE_KEY = 0x2000
GRE_SEQUENCE = 0x1000
MAX_TUNNELS = 3  # tunnels opened inside one another

# ERSPAN III timestamp granularity (the Gra field) and the length of one timestamp unit in ns; the 32-bit
# field wraps, so a stamp is placed in the wrap period nearest the capture time (IEEE 1588: nanoseconds within
# the second, placed in the nearest second, so the TAI-UTC offset of whole seconds does not matter)
ERSPAN_GRANULARITY_NS = (100_000, 100, 1, 0)  # 100 µs, 100 ns, IEEE 1588, user-configurable (not used)
ERSPAN_GRANULARITY_1588 = 2

# RoCEv2 (IBTA annex A17): opcode families
CNP_OPCODE = 0x81
NAK_SYNDROME_MASK = 0xE0
NAK_SYNDROME = 0x60  # AETH syndrome bits 7..5 = 011
PSN_MASK = 0xFFFFFF

FAMILY_NONE, FAMILY_SEND, FAMILY_WRITE, FAMILY_READ, FAMILY_ACK = 0, 1, 2, 3, 4

_RC, _UC, _RD, _UD, _XRC = 0x00, 0x20, 0x40, 0x60, 0xA0
_SEND = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05)
_WRITE = (0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B)
_READ = (0x0C, 0x0D, 0x0E, 0x0F, 0x10)
_ACK = (0x11, 0x12)
_SEND_INVALIDATE = (0x16, 0x17)
_AETH = (0x0D, 0x0F, 0x10, 0x11, 0x12)  # read response first/last/only, ACK, atomic ACK


def _opcode_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per BTH opcode: its family, whether an AETH follows the BTH, and whether IBTA 9.2 defines it for a
    transport RoCEv2 carries (RC, UC, RD, UD, XRC; CNP apart)."""
    family = np.zeros(256, dtype=np.uint8)
    aeth = np.zeros(256, dtype=np.bool_)
    valid = np.zeros(256, dtype=np.bool_)
    rc = [*range(0x00, 0x15), 0x16, 0x17, 0x1C, 0x1D]
    valid[[_RC | code for code in rc]] = True
    valid[_UC : _UC + 0x0C] = True  # UC sends and writes
    valid[_RD : _RD + 0x16] = True
    valid[[_UD | 0x04, _UD | 0x05]] = True  # UD SEND_ONLY (with immediate)
    valid[[_XRC | code for code in rc]] = True
    for transport in (_RC, _RD, _XRC):
        for codes, kind in ((_SEND + _SEND_INVALIDATE, FAMILY_SEND), (_WRITE, FAMILY_WRITE),
                            (_READ, FAMILY_READ), (_ACK, FAMILY_ACK)):
            family[[transport | code for code in codes]] = kind
    family[[_UC | code for code in _SEND]] = FAMILY_SEND
    family[[_UC | code for code in _WRITE]] = FAMILY_WRITE
    family[[_UD | 0x04, _UD | 0x05]] = FAMILY_SEND
    for transport in (_RC, _XRC):  # RD puts an RDETH before the AETH; no RoCE NIC speaks RD
        aeth[[transport | code for code in _AETH]] = True
    return family, aeth, valid


OPCODE_FAMILY, OPCODE_HAS_AETH, OPCODE_VALID = _opcode_tables()
