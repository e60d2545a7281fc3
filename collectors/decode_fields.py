"""The decoder's per-packet fields (IP, L4, BTH) and wire length, each group in one compiled pass over the batch.

As numpy column operations (what collectors.decode did before) they took ~70 whole-column passes, a third of
the decoder's time after the walk; here each packet's fields are read from the slab (row k = byte k of every
packet's header at that slab row) and written once. The wire length follows DESIGN.md section 5.
"""

from __future__ import annotations

import numba
import numpy as np

from collectors import header_table as h
from collectors import protocols
from collectors.wire import slab16, slab24, slab32, slab64
from pipeline.addresses import V4_MAPPED_LO

FCS_BYTES = 4
MIN_FRAME = 60  # bytes of the smallest Ethernet frame without its FCS: shorter ones are padded to it


@numba.njit(cache=True, nogil=True)
def ip_fields(ok: np.ndarray, ip_version: np.ndarray, ethertype: np.ndarray, l3: np.ndarray,
              src_hi: np.ndarray, src_lo: np.ndarray, dst_hi: np.ndarray, dst_lo: np.ndarray,
              traffic_class: np.ndarray, ip_length: np.ndarray) -> None:
    """Addresses (IPv4 and ARP sender/target as v4-mapped words), traffic class and IP total length of each
    packet from `l3`, the slab rows of its IPv4 header without options, fixed IPv6 header or ARP."""
    for i in range(len(ok)):
        src_hi[i] = src_lo[i] = dst_hi[i] = dst_lo[i] = 0
        traffic_class[i] = 0
        ip_length[i] = 0
        if not ok[i]:
            continue
        v4, v6 = ip_version[i] == 4, ip_version[i] == 6
        arp = (ethertype[i] == protocols.ETH_ARP and slab16(l3, h.ARP_PROTOCOL_TYPE, i) == protocols.ETH_IPV4
               and l3[h.ARP_HARDWARE_LENGTH, i] == 6 and l3[h.ARP_PROTOCOL_LENGTH, i] == 4)
        if arp:
            src_lo[i] = np.uint64(slab32(l3, h.ARP_SENDER_PROTOCOL, i)) | V4_MAPPED_LO
            dst_lo[i] = np.uint64(slab32(l3, h.ARP_TARGET_PROTOCOL, i)) | V4_MAPPED_LO
        elif v4:
            src_lo[i] = np.uint64(slab32(l3, h.IPV4_SOURCE, i)) | V4_MAPPED_LO
            dst_lo[i] = np.uint64(slab32(l3, h.IPV4_DESTINATION, i)) | V4_MAPPED_LO
        if v6:
            src_hi[i] = slab64(l3, h.IPV6_SOURCE, i)
            src_lo[i] = slab64(l3, h.IPV6_SOURCE + 8, i)
            dst_hi[i] = slab64(l3, h.IPV6_DESTINATION, i)
            dst_lo[i] = slab64(l3, h.IPV6_DESTINATION + 8, i)
        if v4:
            traffic_class[i] = l3[h.IPV4_TOS, i]
            ip_length[i] = slab16(l3, h.IPV4_TOTAL_LENGTH, i)
        elif v6:
            traffic_class[i] = (slab16(l3, 0, i) >> 4) & 0xFF  # the 8 bits after the version nibble
            ip_length[i] = slab16(l3, h.IPV6_PAYLOAD_LENGTH, i) + h.IPV6_HEADER


@numba.njit(cache=True, nogil=True)
def wire_len(ok: np.ndarray, offset: np.ndarray, caplen: np.ndarray, wirelen: np.ndarray, frame: np.ndarray,
             l3: np.ndarray, vlan_link: np.ndarray, ip_version: np.ndarray, ip_length: np.ndarray,
             out: np.ndarray) -> None:
    """Original length of each monitored frame: the recorded length minus mirror encapsulation, or, when the
    capture or the mirror truncated the frame, the IP total length plus the L2 header. A frame recorded with
    its FCS (mirror copies often keep it) counts as without: after an IP datagram, a trailer of exactly
    FCS_BYTES on a frame needing no padding, or a padded minimum frame plus FCS_BYTES, is the FCS."""
    for i in range(len(ok)):
        if not ok[i]:
            out[i] = 0
            continue
        mirror_tag = h.VLAN_TAG if vlan_link[i] >= 0 else 0
        recorded = np.int64(wirelen[i]) - (frame[i] - offset[i] + mirror_tag)
        from_ip = l3[i] - frame[i] - mirror_tag + ip_length[i]
        ip = ip_version[i] > 0
        truncated = caplen[i] < wirelen[i] or recorded < from_ip
        wire = from_ip if ip and truncated else recorded
        trailer = recorded - from_ip == FCS_BYTES
        if ip and not truncated and (trailer or recorded == MIN_FRAME + FCS_BYTES) \
                and (from_ip >= MIN_FRAME) == trailer:
            wire -= FCS_BYTES
        out[i] = max(wire, 0)


@numba.njit(cache=True, nogil=True)
def l4_fields(ok: np.ndarray, proto: np.ndarray, l4: np.ndarray, slab: np.ndarray,
              src_port: np.ndarray, dst_port: np.ndarray, tcp_flags: np.ndarray) -> None:
    """TCP/UDP ports and TCP flags from the slab rows copied from `l4` (0 for other protocols and packets
    without an L4 header)."""
    for i in range(len(ok)):
        src_port[i] = dst_port[i] = tcp_flags[i] = 0
        if ok[i] and l4[i] >= 0 and (proto[i] == protocols.IP_TCP or proto[i] == protocols.IP_UDP):
            src_port[i] = slab16(slab, h.L4_SOURCE_PORT, i)
            dst_port[i] = slab16(slab, h.L4_DESTINATION_PORT, i)
            if proto[i] == protocols.IP_TCP:
                tcp_flags[i] = slab[h.TCP_FLAGS, i]


@numba.njit(cache=True, nogil=True)
def bth_fields(roce: np.ndarray, bth: np.ndarray, has_aeth: np.ndarray, opcode: np.ndarray, fecn: np.ndarray,
               becn: np.ndarray, dqpn: np.ndarray, psn: np.ndarray, aeth_syndrome: np.ndarray) -> None:
    """RoCEv2 BTH fields and the AETH syndrome (0xFF when the opcode carries no AETH) from the BTH slab rows;
    `has_aeth` tells by opcode."""
    for i in range(len(roce)):
        if not roce[i]:
            opcode[i] = 0
            fecn[i] = becn[i] = False
            dqpn[i] = psn[i] = 0
            aeth_syndrome[i] = 0xFF
            continue
        opcode[i] = bth[h.BTH_OPCODE, i]
        fecn[i] = (bth[h.BTH_FLAGS, i] & h.BTH_FECN_MASK) != 0
        becn[i] = (bth[h.BTH_FLAGS, i] & h.BTH_BECN_MASK) != 0
        dqpn[i] = slab24(bth, h.BTH_DESTINATION_QP, i)
        psn[i] = slab24(bth, h.BTH_PSN, i)
        aeth_syndrome[i] = bth[h.BTH_HEADER + h.AETH_SYNDROME, i] if has_aeth[opcode[i]] else 0xFF
