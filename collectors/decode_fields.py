"""The decoder's per-packet fields (IP, L4, BTH) in one compiled pass over the walk's header blocks, the wire
length in another, and the walk's own columns as the decoded packets hold them (0 or -1 on malformed
packets) in a third, where a dozen numpy `where`s and casts took ~1 ms of every 65,536-packet batch.

As numpy column operations (what collectors.decode did before) they took ~70 whole-column passes, a third of
the decoder's time after the walk; here each packet's fields are read from its header block (row i, the
collectors.decode_walk.BLOCK_* columns) while it is in cache, and written once. The helpers return values
and the pass stores them: given the output arrays to write instead, the same pass ran three times slower.
The wire length follows DESIGN.md section 5.
"""

from __future__ import annotations

import numba
import numpy as np

from collectors import header_table as h
from collectors import protocols
from collectors.wire import row16, row24, row32, row64
from pipeline.addresses import V4_MAPPED_LO

FCS_BYTES = 4
MIN_FRAME = 60  # bytes of the smallest Ethernet frame without its FCS: shorter ones are padded to it


@numba.njit(cache=True, nogil=True)
def header_fields(ok: np.ndarray, blocks: np.ndarray, l3_at: int, l4_at: int, app_l4_at: int, bth_at: int,
                  ip_version: np.ndarray, ethertype: np.ndarray, proto: np.ndarray, l4: np.ndarray,
                  app_proto: np.ndarray, app_l4: np.ndarray, roce: np.ndarray, has_aeth: np.ndarray,
                  src_hi: np.ndarray, src_lo: np.ndarray, dst_hi: np.ndarray, dst_lo: np.ndarray,
                  traffic_class: np.ndarray, ip_length: np.ndarray,
                  src_port: np.ndarray, dst_port: np.ndarray, tcp_flags: np.ndarray,
                  app_src_port: np.ndarray, app_dst_port: np.ndarray, app_tcp_flags: np.ndarray,
                  opcode: np.ndarray, fecn: np.ndarray, becn: np.ndarray, dqpn: np.ndarray, psn: np.ndarray,
                  aeth_syndrome: np.ndarray) -> None:
    """Every packet's IP, L4 (outer and innermost) and BTH fields from its header block `blocks[i]`, whose IP
    header starts at column `l3_at`, L4 headers at `l4_at` and `app_l4_at`, BTH at `bth_at`; 0 where the
    packet is not `ok` or has no such header. Addresses of IPv4 and of ARP's sender and target are v4-mapped
    words; the AETH syndrome is 0xFF where the opcode carries no AETH (`has_aeth` tells)."""
    for i in range(len(ok)):
        words = _ip(blocks, i, l3_at, ok[i], ip_version[i], ethertype[i])
        src_hi[i], src_lo[i], dst_hi[i], dst_lo[i], traffic_class[i], ip_length[i] = words
        src_port[i], dst_port[i], tcp_flags[i] = _l4(blocks, i, l4_at, ok[i] and l4[i] >= 0, proto[i])
        app_src_port[i], app_dst_port[i], app_tcp_flags[i] = _l4(blocks, i, app_l4_at, ok[i] and app_l4[i] >= 0,
                                                                  app_proto[i])
        if ok[i] and roce[i]:
            opcode[i] = blocks[i, bth_at + h.BTH_OPCODE]
            fecn[i] = (blocks[i, bth_at + h.BTH_FLAGS] & h.BTH_FECN_MASK) != 0
            becn[i] = (blocks[i, bth_at + h.BTH_FLAGS] & h.BTH_BECN_MASK) != 0
            dqpn[i] = row24(blocks, i, bth_at + h.BTH_DESTINATION_QP)
            psn[i] = row24(blocks, i, bth_at + h.BTH_PSN)
            aeth_syndrome[i] = blocks[i, bth_at + h.BTH_HEADER + h.AETH_SYNDROME] if has_aeth[opcode[i]] else 0xFF
        else:
            opcode[i] = 0
            fecn[i] = becn[i] = False
            dqpn[i] = psn[i] = 0
            aeth_syndrome[i] = 0xFF


@numba.njit(cache=True, inline="always")
def _ip(blocks: np.ndarray, i: int, at: int, ok: bool, ip_version: int,
        ethertype: int) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64, np.int64, np.int64]:
    """(src_hi, src_lo, dst_hi, dst_lo, traffic class, IP total length) of an IPv4 header without options, a
    fixed IPv6 header or an ARP message at blocks[i, at:]."""
    zero, none = np.uint64(0), np.int64(0)
    if not ok:
        return zero, zero, zero, zero, none, none
    if ip_version == 6:
        return (row64(blocks, i, at + h.IPV6_SOURCE), row64(blocks, i, at + h.IPV6_SOURCE + 8),
                row64(blocks, i, at + h.IPV6_DESTINATION), row64(blocks, i, at + h.IPV6_DESTINATION + 8),
                (row16(blocks, i, at) >> 4) & 0xFF,  # the 8 bits after the version nibble
                row16(blocks, i, at + h.IPV6_PAYLOAD_LENGTH) + h.IPV6_HEADER)
    if ethertype == protocols.ETH_ARP and row16(blocks, i, at + h.ARP_PROTOCOL_TYPE) == protocols.ETH_IPV4 \
            and blocks[i, at + h.ARP_HARDWARE_LENGTH] == 6 and blocks[i, at + h.ARP_PROTOCOL_LENGTH] == 4:
        return (zero, np.uint64(row32(blocks, i, at + h.ARP_SENDER_PROTOCOL)) | V4_MAPPED_LO,
                zero, np.uint64(row32(blocks, i, at + h.ARP_TARGET_PROTOCOL)) | V4_MAPPED_LO, none, none)
    if ip_version == 4:
        return (zero, np.uint64(row32(blocks, i, at + h.IPV4_SOURCE)) | V4_MAPPED_LO,
                zero, np.uint64(row32(blocks, i, at + h.IPV4_DESTINATION)) | V4_MAPPED_LO,
                np.int64(blocks[i, at + h.IPV4_TOS]), row16(blocks, i, at + h.IPV4_TOTAL_LENGTH))
    return zero, zero, zero, zero, none, none


@numba.njit(cache=True, inline="always")
def _l4(blocks: np.ndarray, i: int, at: int, present: bool, proto: int) -> tuple[np.int64, np.int64, np.int64]:
    """(source port, destination port, TCP flags) of the TCP or UDP header at blocks[i, at:]; zeros for other
    protocols and when no L4 header is `present`."""
    if present and (proto == protocols.IP_TCP or proto == protocols.IP_UDP):
        flags = np.int64(blocks[i, at + h.TCP_FLAGS]) if proto == protocols.IP_TCP else np.int64(0)
        return row16(blocks, i, at + h.L4_SOURCE_PORT), row16(blocks, i, at + h.L4_DESTINATION_PORT), flags
    return np.int64(0), np.int64(0), np.int64(0)


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
def walk_fields(ok: np.ndarray, offset: np.ndarray, caplen: np.ndarray, traffic_class: np.ndarray,
                session: np.ndarray, vlan: np.ndarray, ethertype: np.ndarray, proto: np.ndarray, vni: np.ndarray,
                vxlan: np.ndarray, is_roce: np.ndarray, app_proto: np.ndarray, payload: np.ndarray,
                out: tuple[np.ndarray, ...]) -> None:
    """The walk's columns as DecodedPackets holds them, in one pass: their value on well-formed packets, and on
    malformed ones 0 (the ERSPAN session and payload offset -1); DSCP and ECN split from the traffic class;
    the payload's captured bytes."""
    (out_session, out_vlan, out_ethertype, out_proto, out_vni, out_vxlan, out_is_roce, out_app_proto,
     out_payload_offset, out_payload_caplen, out_dscp, out_ecn) = out
    for i in range(len(ok)):
        good = ok[i]
        out_session[i] = session[i] if good else -1
        out_vlan[i] = vlan[i] if good else 0
        out_ethertype[i] = ethertype[i] if good else 0
        out_proto[i] = proto[i] if good else 0
        out_vni[i] = vni[i] if good else 0
        out_vxlan[i] = good and vxlan[i]
        out_is_roce[i] = good and is_roce[i]
        out_app_proto[i] = app_proto[i] if good else 0
        out_payload_offset[i] = payload[i] if good else -1
        out_payload_caplen[i] = offset[i] + np.int64(caplen[i]) - payload[i] if good and payload[i] >= 0 else 0
        out_dscp[i] = traffic_class[i] >> 2
        out_ecn[i] = traffic_class[i] & 3
