"""The variable-length part of decoding, compiled: one pass over a batch that finds where each header starts.

Link headers, VLAN stacks, MPLS labels, IPv4 options, IPv6 extension chains, GRE/ERSPAN and the tunnels (GRE,
IP-in-IP, VXLAN, Geneve) make header positions differ per packet, so a compiled walk locates them and
validates lengths against caplen. Fixed-offset fields (addresses, ports, BTH, PFC quanta) are then read from
the header blocks it copies, in collectors.decode. Every offset and size comes from collectors.header_table.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numba
import numpy as np

from collectors import header_table as h
from collectors import protocols as p
from collectors.offsets import prefetch
from collectors.wire import be16, be24, be32

# Malformed-packet reasons (`status`); 0 = ok.
OK = 0
SHORT_ETHERNET = 1
BAD_IP_HEADER = 2
SHORT_IP = 3
BAD_IPV6_EXTENSION = 4
SHORT_L4 = 5
BAD_TCP_OFFSET = 6
SHORT_TUNNEL = 7
SHORT_BTH = 8
SHORT_CONTROL = 9
SHORT_LINK_HEADER = 10
MALFORMED_REASONS = (
    "ok", "short_ethernet", "bad_ip_header", "short_ip", "bad_ipv6_extension", "short_l4", "bad_tcp_offset",
    "short_tunnel", "short_bth", "short_control", "short_link_header",
)
UNSUPPORTED_LINKTYPE = len(MALFORMED_REASONS)  # a batch of a link type the walk does not open: not malformed

CARRIES_NOTHING = 0  # what a tunnel carries (_tunnel), besides an EtherType
CARRIES_ETHERNET = 1
INNER_HEADER = h.IPV6_HEADER  # bytes kept of a tunnel's inner IP header: both addresses of IPv4 or IPv6

_AETH = p.OPCODE_HAS_AETH

# The walk copies the bytes the fields are read from into one compact row per packet, its header block, while
# they are in cache (block[i, k] = byte k of packet i's block, zeros past the capture): a gather per field
# over a batch of full frames would miss the cache once per field, while the compiled field pass reads the
# blocks in order. (A column-major copy for numpy cost a transposition, ~40 ns a packet, a third of the walk.)
BLOCK_L3 = 0  # the fixed IPv6 header's length from the IP/ARP/MAC-control header of the monitored frame
BLOCK_L4 = BLOCK_L3 + h.IPV6_HEADER  # its L4 header up to the TCP flags
BLOCK_APP_L4 = BLOCK_L4 + h.TCP_FLAGS + 1  # the innermost L4 header up to the TCP flags
BLOCK_BTH = BLOCK_APP_L4 + h.TCP_FLAGS + 1  # the BTH and the AETH syndrome byte
BLOCK_WIDTH = BLOCK_BTH + h.BTH_HEADER + h.AETH_SYNDROME + 1
PREFETCH_AHEAD = 8  # packets: the walk asks for the header lines of packet i + 8 while it decodes packet i
PREFETCH_SPAN = 128  # bytes of headers prefetched per packet: ERSPAN II + Ethernet + IPv4 + UDP + BTH + AETH


@numba.njit(cache=True)
def _frame(buf: np.ndarray, frame: int, end: int) -> tuple[int, int, int, int, int, int, int, int, int, int]:
    """Ethernet + VLAN tags + IP + L4 start of one frame.

    Returns (status, tags, first_vid, last_vid, ethertype, l3, ip_version, proto, l4, l4_end); l4 = -1 when
    there is no L4 header to read (non-IP, non-first fragment); l4_end bounds L4 parsing (captured end, or
    the IP datagram's end when the frame carries Ethernet padding).
    """
    if frame + h.ETH_HEADER > end:
        return SHORT_ETHERNET, 0, 0, 0, 0, -1, 0, 0, -1, end
    ethertype = be16(buf, frame + h.ETH_TYPE)
    at = frame + h.ETH_HEADER
    tags = 0
    first_vid = 0
    last_vid = 0
    while ethertype == p.ETH_VLAN or ethertype == p.ETH_QINQ or ethertype == p.ETH_QINQ_OLD:
        if at + h.VLAN_TAG > end or tags == p.MAX_VLAN_TAGS:
            return SHORT_ETHERNET, tags, first_vid, last_vid, ethertype, -1, 0, 0, -1, end
        last_vid = be16(buf, at) & h.VLAN_VID_MASK
        if tags == 0:
            first_vid = last_vid
        ethertype = be16(buf, at + h.VLAN_TYPE)
        at += h.VLAN_TAG
        tags += 1
    st, ethertype, l3, ip_version, proto, l4, l4_end = _network(buf, ethertype, at, end)
    return st, tags, first_vid, last_vid, ethertype, l3, ip_version, proto, l4, l4_end


@numba.njit(cache=True)
def _link_header(buf: np.ndarray, start: int, end: int, linktype: int) -> tuple[int, int, int]:
    """(status, EtherType of the network header, its start) after a non-Ethernet link header; raw IP has
    none (the version nibble says which IP), PPP's protocol numbers are mapped to EtherTypes."""
    if linktype == p.LINKTYPE_LINUX_SLL or linktype == p.LINKTYPE_LINUX_SLL2:
        size = h.SLL_HEADER if linktype == p.LINKTYPE_LINUX_SLL else h.SLL2_HEADER
        field = h.SLL_PROTOCOL if linktype == p.LINKTYPE_LINUX_SLL else h.SLL2_PROTOCOL
        if start + size > end:
            return SHORT_LINK_HEADER, 0, start
        return OK, be16(buf, start + field), start + size
    if linktype == p.LINKTYPE_CISCO_HDLC:
        if start + h.HDLC_HEADER > end:
            return SHORT_LINK_HEADER, 0, start
        return OK, be16(buf, start + h.HDLC_PROTOCOL), start + h.HDLC_HEADER
    if linktype == p.LINKTYPE_PPP or linktype == p.LINKTYPE_PPP_HDLC:
        at = start
        if start + h.PPP_HDLC_HEADER <= end and be16(buf, start) == p.PPP_ADDRESS_CONTROL:
            at = start + h.PPP_PROTOCOL
        if at + h.PPP_HDLC_HEADER - h.PPP_PROTOCOL > end:
            return SHORT_LINK_HEADER, 0, start
        protocol = be16(buf, at)
        at += h.PPP_HDLC_HEADER - h.PPP_PROTOCOL
        if protocol == p.PPP_IPV4:
            return OK, p.ETH_IPV4, at
        if protocol == p.PPP_IPV6:
            return OK, p.ETH_IPV6, at
        if protocol == p.PPP_MPLS:
            return OK, p.ETH_MPLS, at
        return OK, 0, at  # LCP, IPCP and the other control protocols: a non-IP frame
    if start >= end:
        return SHORT_LINK_HEADER, 0, start
    version = int(buf[start]) >> 4
    if linktype == p.LINKTYPE_IPV4 or (linktype != p.LINKTYPE_IPV6 and version == 4):
        return OK, p.ETH_IPV4, start
    if linktype == p.LINKTYPE_IPV6 or version == 6:
        return OK, p.ETH_IPV6, start
    return BAD_IP_HEADER, 0, start


@numba.njit(cache=True, inline="always")
def _network(buf: np.ndarray, ethertype: int, l3: int, end: int) -> tuple[int, int, int, int, int, int, int]:
    """The network header at `l3` of type `ethertype`: (status, ethertype, l3, ip_version, proto, l4, l4_end),
    as in _frame."""
    if ethertype == p.ETH_IPV4:
        if l3 + h.IPV4_HEADER > end:
            return SHORT_IP, ethertype, l3, 4, 0, -1, end
        ihl = (int(buf[l3]) & 0x0F) * 4  # IHL: 32-bit words
        total = be16(buf, l3 + h.IPV4_TOTAL_LENGTH)
        if int(buf[l3]) >> 4 != 4 or ihl < h.IPV4_HEADER or total < ihl:
            return BAD_IP_HEADER, ethertype, l3, 4, 0, -1, end
        if l3 + ihl > end:
            return SHORT_IP, ethertype, l3, 4, 0, -1, end
        proto = int(buf[l3 + h.IPV4_PROTOCOL])
        first_fragment = (be16(buf, l3 + h.IPV4_FRAGMENT) & h.IPV4_FRAGMENT_MASK) == 0
        return (OK, ethertype, l3, 4, proto, l3 + ihl if first_fragment else -1,
                min(end, l3 + total))
    if ethertype == p.ETH_IPV6:
        if l3 + h.IPV6_HEADER > end:
            return SHORT_IP, ethertype, l3, 6, 0, -1, end
        if int(buf[l3]) >> 4 != 6:
            return BAD_IP_HEADER, ethertype, l3, 6, 0, -1, end
        datagram_end = min(end, l3 + h.IPV6_HEADER + be16(buf, l3 + h.IPV6_PAYLOAD_LENGTH))
        proto = int(buf[l3 + h.IPV6_NEXT_HEADER])
        at = l3 + h.IPV6_HEADER
        for _ in range(p.MAX_IPV6_EXTENSIONS):
            if proto == p.IPV6_FRAGMENT:
                if at + h.IPV6_FRAGMENT_HEADER > end:
                    return BAD_IPV6_EXTENSION, ethertype, l3, 6, proto, -1, end
                offset = be16(buf, at + h.IPV6_FRAGMENT_OFFSET) >> h.IPV6_FRAGMENT_SHIFT
                proto = int(buf[at])
                at += h.IPV6_FRAGMENT_HEADER
                if offset != 0:
                    return OK, ethertype, l3, 6, proto, -1, datagram_end
            elif proto == p.IPV6_HOP_BY_HOP or proto == p.IPV6_ROUTING or proto == p.IPV6_DEST_OPTIONS:
                if at + h.IPV6_EXTENSION > end:
                    return BAD_IPV6_EXTENSION, ethertype, l3, 6, proto, -1, end
                size = (int(buf[at + h.IPV6_EXTENSION_LENGTH]) + 1) * 8  # 8-octet units, the first not counted
                proto = int(buf[at])
                at += size
                if at > end:
                    return BAD_IPV6_EXTENSION, ethertype, l3, 6, proto, -1, end
            else:
                break
        return OK, ethertype, l3, 6, proto, at, datagram_end
    short_arp = ethertype == p.ETH_ARP and (
        l3 + h.ARP_FIXED > end
        or (buf[l3 + h.ARP_HARDWARE_LENGTH] == 6 and buf[l3 + h.ARP_PROTOCOL_LENGTH] == 4
            and l3 + h.ARP_IPV4_OVER_ETHERNET > end)
    )
    short_pfc = ethertype == p.ETH_MAC_CONTROL and (
        l3 + 2 > end or (be16(buf, l3 + h.PFC_OPCODE_AT) == p.PFC_OPCODE and l3 + h.PFC_FRAME > end)
    )
    if short_arp or short_pfc:
        return SHORT_CONTROL, ethertype, l3, 0, 0, -1, end
    return OK, ethertype, l3, 0, 0, -1, end


@numba.njit(cache=True)
def _l4_header(buf: np.ndarray, proto: int, l4: int, end: int) -> tuple[int, int]:
    """(status, payload start) of a TCP/UDP/ICMP header at `l4`; payload -1 for other protocols."""
    if proto == p.IP_TCP:
        if l4 + h.TCP_HEADER > end:
            return SHORT_L4, -1
        size = (int(buf[l4 + h.TCP_DATA_OFFSET]) >> 4) * 4  # data offset: 32-bit words
        if size < h.TCP_HEADER:
            return BAD_TCP_OFFSET, -1
        if l4 + size > end:
            return SHORT_L4, -1
        return OK, l4 + size
    if proto == p.IP_UDP or proto == p.IP_ICMP or proto == p.IP_ICMPV6:
        if l4 + h.UDP_HEADER > end:
            return SHORT_L4, -1
        return OK, l4 + h.UDP_HEADER
    return OK, -1


@numba.njit(cache=True)
def _erspan(buf: np.ndarray, gre: int, end: int) -> tuple[int, int, int, int, int]:
    """(status, session or -1, start of the mirrored frame or -1 when this GRE packet is not ERSPAN, the ERSPAN
    III timestamp or -1, its granularity or -1). Type I (protocol 0x88BE without a GRE sequence number, as
    tshark reads it) has no ERSPAN header."""
    if gre + h.GRE_HEADER > end:
        return SHORT_TUNNEL, -1, -1, -1, -1
    flags = be16(buf, gre)
    kind = be16(buf, gre + h.GRE_PROTOCOL)
    if (flags & h.GRE_VERSION_MASK) != 0 or (kind != p.ETH_ERSPAN_II and kind != p.ETH_ERSPAN_III):
        return OK, -1, -1, -1, -1
    at = _gre_payload(flags, gre)
    if not flags & p.GRE_SEQUENCE and kind == p.ETH_ERSPAN_II:
        return (OK, -1, at, -1, -1) if at <= end else (SHORT_TUNNEL, -1, -1, -1, -1)
    size = h.ERSPAN_II_HEADER if kind == p.ETH_ERSPAN_II else h.ERSPAN_III_HEADER
    if at + size > end:
        return SHORT_TUNNEL, -1, -1, -1, -1
    session = be16(buf, at + h.ERSPAN_SESSION) & h.ERSPAN_SESSION_MASK
    if kind == p.ETH_ERSPAN_II:
        return OK, session, at + size, -1, -1
    stamp = be32(buf, at + h.ERSPAN_III_TIMESTAMP)
    flag_byte = int(buf[at + h.ERSPAN_III_FLAGS])
    granularity = (flag_byte & h.ERSPAN_III_GRANULARITY_MASK) >> h.ERSPAN_III_GRANULARITY_SHIFT
    if flag_byte & h.ERSPAN_III_OPTIONAL_MASK:
        size += h.ERSPAN_III_PLATFORM
        if at + size > end:
            return SHORT_TUNNEL, -1, -1, -1, -1
    return OK, session, at + size, stamp, granularity


@numba.njit(cache=True, inline="always")
def _gre_payload(flags: int, gre: int) -> int:
    """Start of a GRE packet's payload: after the optional checksum, key and sequence number its flags announce."""
    at = gre + h.GRE_HEADER
    if flags & p.GRE_CHECKSUM:
        at += h.GRE_OPTION
    if flags & p.GRE_KEY:
        at += h.GRE_OPTION
    if flags & p.GRE_SEQUENCE:
        at += h.GRE_OPTION
    return at


@numba.njit(cache=True)
def _mpls(buf: np.ndarray, at: int, end: int) -> tuple[int, int, int, int]:
    """(status, EtherType of what the label stack carries (IP by its version nibble, else 0), its start, the
    bottom label)."""
    label = 0
    for _ in range(p.MAX_MPLS_LABELS):
        if at + h.MPLS_ENTRY > end:
            return SHORT_TUNNEL, 0, at, 0
        label = be32(buf, at) >> h.MPLS_LABEL_SHIFT
        bottom = buf[at + h.MPLS_BOTTOM] & h.MPLS_BOTTOM_MASK
        at += h.MPLS_ENTRY
        if bottom:
            if at >= end:
                return SHORT_TUNNEL, 0, at, label
            version = int(buf[at]) >> 4
            return OK, p.ETH_IPV4 if version == 4 else p.ETH_IPV6 if version == 6 else 0, at, label
    return SHORT_TUNNEL, 0, at, label


@numba.njit(cache=True, inline="always")
def _may_tunnel(buf: np.ndarray, proto: int, l4: int) -> bool:
    """Whether the L4 header at `l4` can carry a tunnel (most packets cannot: the walk's fast path)."""
    if proto == p.IP_UDP:
        port = be16(buf, l4 + h.L4_DESTINATION_PORT)
        return port == p.UDP_VXLAN or port == p.UDP_GENEVE
    return proto == p.IP_GRE or proto == p.IP_IPIP or proto == p.IP_IPV6


@numba.njit(cache=True)
def _tunnel(buf: np.ndarray, proto: int, l4: int, body: int, end: int) -> tuple[int, int, int, int, bool]:
    """What the L4 header at `l4` (its payload at `body`) tunnels: (status, CARRIES_NOTHING, CARRIES_ETHERNET or
    the EtherType carried, where it starts, the tunnel id (VNI or GRE key) or -1, whether it is VXLAN)."""
    if proto == p.IP_IPIP:
        return OK, p.ETH_IPV4, l4, -1, False
    if proto == p.IP_IPV6:
        return OK, p.ETH_IPV6, l4, -1, False
    if proto == p.IP_GRE:
        if l4 + h.GRE_HEADER > end:
            return SHORT_TUNNEL, CARRIES_NOTHING, -1, -1, False
        flags = be16(buf, l4)
        kind = be16(buf, l4 + h.GRE_PROTOCOL)
        if (flags & h.GRE_VERSION_MASK) != 0 or not (
            kind == p.ETH_TEB or kind == p.ETH_IPV4 or kind == p.ETH_IPV6 or kind == p.ETH_MPLS
        ):
            return OK, CARRIES_NOTHING, -1, -1, False
        at = _gre_payload(flags, l4)
        if at > end:
            return SHORT_TUNNEL, CARRIES_NOTHING, -1, -1, False
        key = -1
        if flags & p.GRE_KEY:
            key = be32(buf, l4 + h.GRE_HEADER + (h.GRE_OPTION if flags & p.GRE_CHECKSUM else 0))
        return OK, CARRIES_ETHERNET if kind == p.ETH_TEB else kind, at, key, False
    if proto == p.IP_UDP and body >= 0:
        port = be16(buf, l4 + h.L4_DESTINATION_PORT)
        if port == p.UDP_VXLAN:
            if body + h.VXLAN_HEADER > end:
                return SHORT_TUNNEL, CARRIES_NOTHING, -1, -1, False
            return OK, CARRIES_ETHERNET, body + h.VXLAN_HEADER, be24(buf, body + h.VXLAN_VNI), True
        if port == p.UDP_GENEVE:
            if body + h.GENEVE_HEADER > end:
                return SHORT_TUNNEL, CARRIES_NOTHING, -1, -1, False
            size = h.GENEVE_HEADER + (int(buf[body]) & h.GENEVE_OPTIONS_LENGTH_MASK) * 4  # options: 4-byte words
            kind = be16(buf, body + h.GENEVE_PROTOCOL)
            if body + size > end:
                return SHORT_TUNNEL, CARRIES_NOTHING, -1, -1, False
            if kind != p.ETH_TEB and kind != p.ETH_IPV4 and kind != p.ETH_IPV6:
                return OK, CARRIES_NOTHING, -1, -1, False
            carries = CARRIES_ETHERNET if kind == p.ETH_TEB else kind
            return OK, carries, body + size, be24(buf, body + h.GENEVE_VNI), False
    return OK, CARRIES_NOTHING, -1, -1, False


@dataclass(frozen=True, slots=True)
class Headers:
    """Where each packet's headers are (absolute offsets into the batch's `data`, -1 when absent) and the
    values the walk had to read to find them."""

    status: np.ndarray  # uint8, OK or a malformed reason
    session: np.ndarray  # int16, ERSPAN session id, -1 when not ERSPAN II/III
    vlan_link: np.ndarray  # int16, link of a mirror VLAN tag (topology vlan_table), -1 when none
    frame: np.ndarray  # int64, first byte of the monitored frame (after ERSPAN)
    vlan: np.ndarray  # uint16, innermost VID of the monitored frame, mirror tag excluded
    ethertype: np.ndarray  # uint16, after the VLAN tags
    l3: np.ndarray  # int64, IP/ARP/MAC-control header
    ip_version: np.ndarray  # uint8, 4, 6 or 0
    proto: np.ndarray  # uint8, IP protocol after IPv6 extension headers
    l4: np.ndarray  # int64, L4 header of the monitored frame (-1 for non-first fragments)
    vni: np.ndarray  # uint32, tunnel id: VXLAN/Geneve VNI, GRE key, MPLS bottom label (the innermost one), 0 if none
    inner_l3: np.ndarray  # int64, the IP header of the tunnel's inner flow when that is the flow key, else -1
    vxlan: np.ndarray  # bool, a VXLAN tunnel was crossed (DPI labels the packet `vxlan`)
    switch_stamp: np.ndarray  # int64, ERSPAN III timestamp (units of switch_granularity), -1 when none
    switch_granularity: np.ndarray  # int8, ERSPAN III Gra field, -1 when none
    app_proto: np.ndarray  # uint8, innermost (tunnel inner, else monitored) IP protocol
    app_l4: np.ndarray  # int64, innermost TCP/UDP/ICMP header
    payload: np.ndarray  # int64, innermost L4 payload (the BTH for RoCE)
    is_roce: np.ndarray  # bool, a complete BTH (and AETH where the opcode has one) is captured
    block: np.ndarray  # (n, BLOCK_WIDTH) uint8, header bytes at the BLOCK_* columns (zeros past the capture)
    inner_header: np.ndarray  # (n, INNER_HEADER) uint8, the bytes at inner_l3; only rows with inner_l3 >= 0 set


def _empty(n: int) -> Headers:
    return Headers(
        status=np.zeros(n, dtype=np.uint8), session=np.empty(n, dtype=np.int16),
        vlan_link=np.empty(n, dtype=np.int16), frame=np.empty(n, dtype=np.int64), vlan=np.empty(n, dtype=np.uint16),
        ethertype=np.empty(n, dtype=np.uint16), l3=np.empty(n, dtype=np.int64),
        ip_version=np.empty(n, dtype=np.uint8), proto=np.empty(n, dtype=np.uint8), l4=np.empty(n, dtype=np.int64),
        vni=np.empty(n, dtype=np.uint32), inner_l3=np.empty(n, dtype=np.int64), vxlan=np.empty(n, dtype=np.bool_),
        switch_stamp=np.empty(n, dtype=np.int64), switch_granularity=np.empty(n, dtype=np.int8),
        app_proto=np.empty(n, dtype=np.uint8), app_l4=np.empty(n, dtype=np.int64),
        payload=np.empty(n, dtype=np.int64), is_roce=np.empty(n, dtype=np.bool_),
        block=np.empty((n, BLOCK_WIDTH), dtype=np.uint8), inner_header=np.empty((n, INNER_HEADER), dtype=np.uint8),
    )


def unsupported(n: int) -> Headers:
    """Headers of `n` packets of a link type the walk does not open: every header absent."""
    headers = _empty(n)
    for name in fields(Headers):
        getattr(headers, name.name).fill(0)
    for column in (headers.session, headers.vlan_link, headers.l3, headers.l4, headers.app_l4, headers.payload,
                   headers.inner_l3, headers.switch_stamp, headers.switch_granularity):
        column.fill(-1)
    headers.status.fill(UNSUPPORTED_LINKTYPE)
    return headers


def locate(
    data: np.ndarray, offset: np.ndarray, caplen: np.ndarray, vlan_links: np.ndarray, linktype: int
) -> Headers:
    """Run the compiled walk over one batch of one link type (one of protocols.LINKTYPES)."""
    headers = _empty(len(offset))
    walk(data, offset, caplen, vlan_links, linktype, *(getattr(headers, name.name) for name in fields(Headers)))
    return headers


@numba.njit(cache=True)
def walk(
    buf: np.ndarray,
    offset: np.ndarray,
    caplen: np.ndarray,
    vlan_links: np.ndarray,
    linktype: int,
    status: np.ndarray,
    session: np.ndarray,
    vlan_link: np.ndarray,
    frame_start: np.ndarray,
    vlan: np.ndarray,
    ethertype: np.ndarray,
    l3: np.ndarray,
    ip_version: np.ndarray,
    proto: np.ndarray,
    l4: np.ndarray,
    vni: np.ndarray,
    inner_l3: np.ndarray,
    vxlan_crossed: np.ndarray,
    switch_stamp: np.ndarray,
    switch_granularity: np.ndarray,
    app_proto: np.ndarray,
    app_l4: np.ndarray,
    payload: np.ndarray,
    is_roce: np.ndarray,
    block: np.ndarray,
    inner_header: np.ndarray,
) -> None:
    """Locate the monitored frame (after ERSPAN), its headers, the tunnels it carries and the innermost L4 flow
    of each packet.

    `frame_start` is the monitored frame's first byte; a mirror VLAN tag mapped in `vlan_links` is reported in
    `vlan_link` and left out of `vlan`. Outputs are left at their "absent" values for malformed packets. The
    innermost IP header inside tunnels (GRE, IP-in-IP, VXLAN, Geneve, MPLS) becomes the flow key (`inner_l3`);
    a tunnel whose inner frame is not IP, or was cut before its IP header, leaves the outer flow as the key.
    `vxlan_crossed` says a VXLAN tunnel was crossed, whatever it carried: DESIGN.md labels such packets `vxlan`.
    """
    last = len(buf) - 1
    for i in range(len(offset)):
        if i + PREFETCH_AHEAD < len(offset):
            ahead = offset[i + PREFETCH_AHEAD]
            for line in range(0, PREFETCH_SPAN, 64):
                prefetch(buf, min(ahead + line, last))  # type: ignore[call-arg]  # numba stubs: @intrinsic drops typingctx
        start = offset[i]
        end = start + caplen[i]
        frame = start
        if linktype == p.LINKTYPE_ETHERNET:
            st, tags, first_vid, last_vid, etype, at3, ipver, prot, at4, l4_end = _frame(buf, start, end)
        else:
            tags, first_vid, last_vid = 0, 0, 0
            st, etype, network = _link_header(buf, start, end, linktype)
            if linktype == p.LINKTYPE_LINUX_SLL or linktype == p.LINKTYPE_LINUX_SLL2:
                frame = network  # a pseudo-header the capture wrote, not bytes of the frame on the wire
            at3, ipver, prot, at4, l4_end = network, 0, 0, -1, end
            if st == OK:
                st, etype, at3, ipver, prot, at4, l4_end = _network(buf, etype, network, end)
        session[i] = -1
        vlan_link[i] = -1
        switch_stamp[i] = -1
        switch_granularity[i] = -1
        mirrored = False
        if st == OK and prot == p.IP_GRE and at4 >= 0:
            gst, sess, inner, stamp, granularity = _erspan(buf, at4, l4_end)
            if gst != OK:
                st = gst
            elif inner >= 0:
                session[i] = sess
                switch_stamp[i] = stamp
                switch_granularity[i] = granularity
                frame = inner
                mirrored = True
                st, tags, first_vid, last_vid, etype, at3, ipver, prot, at4, l4_end = _frame(buf, inner, end)
        if not mirrored and tags > 0 and vlan_links[first_vid] >= 0:
            vlan_link[i] = vlan_links[first_vid]
            tags -= 1
            if tags == 0:
                last_vid = 0
        vni[i] = 0
        if st == OK and (etype == p.ETH_MPLS or etype == p.ETH_MPLS_MULTICAST):
            st, etype, at3, label = _mpls(buf, at3, end)
            vni[i] = label
            if st == OK:
                st, etype, at3, ipver, prot, at4, l4_end = _network(buf, etype, at3, end)
        frame_start[i] = frame
        vlan[i] = last_vid if tags > 0 else 0
        ethertype[i] = etype
        l3[i] = at3
        ip_version[i] = ipver
        proto[i] = prot
        l4[i] = at4
        inner_l3[i] = -1
        vxlan_crossed[i] = False
        app_proto[i] = prot
        app_l4[i] = -1
        payload[i] = -1
        is_roce[i] = False
        if st == OK and at4 >= 0:
            st, body = _l4_header(buf, prot, at4, l4_end)
            app_l4[i] = at4
            payload[i] = body
            outer_proto, outer_l4, outer_end = prot, at4, l4_end
            for _ in range(p.MAX_TUNNELS):
                if st != OK or not _may_tunnel(buf, outer_proto, outer_l4):
                    break
                tst, carried, inner, tunnel_id, vxlan = _tunnel(buf, outer_proto, outer_l4, payload[i], outer_end)
                if tst != OK or carried == CARRIES_NOTHING:
                    st = tst
                    break
                if tunnel_id >= 0:
                    vni[i] = tunnel_id
                if vxlan:
                    vxlan_crossed[i] = True
                ist, ietype, i3, iver, iprot, i4, iend = OK, carried, inner, 0, 0, -1, outer_end
                if carried == CARRIES_ETHERNET:
                    ist, _, _, _, ietype, i3, iver, iprot, i4, iend = _frame(buf, inner, outer_end)
                parse_network = carried != CARRIES_ETHERNET
                if ist == OK and (ietype == p.ETH_MPLS or ietype == p.ETH_MPLS_MULTICAST):
                    ist, ietype, i3, label = _mpls(buf, i3, outer_end)
                    vni[i] = label
                    parse_network = True
                if ist == OK and parse_network:
                    ist, ietype, i3, iver, iprot, i4, iend = _network(buf, ietype, i3, outer_end)
                app_proto[i] = iprot if ist == OK else 0
                app_l4[i] = -1
                payload[i] = -1
                if ist != OK or iver == 0:
                    break
                inner_l3[i] = i3
                if i4 < 0:
                    break
                lst, ibody = _l4_header(buf, iprot, i4, iend)
                if lst != OK:
                    break
                app_l4[i] = i4
                payload[i] = ibody
                l4_end = iend
                outer_proto, outer_l4, outer_end = iprot, i4, iend
        app_port = be16(buf, app_l4[i] + h.L4_DESTINATION_PORT) if st == OK and app_l4[i] >= 0 else 0
        if app_proto[i] == p.IP_UDP and app_port == p.UDP_ROCEV2:
            bth = payload[i]
            if bth + h.BTH_HEADER > l4_end or (
                _AETH[buf[bth + h.BTH_OPCODE]] and bth + h.BTH_HEADER + h.AETH_HEADER > l4_end
            ):
                st = SHORT_BTH
            else:
                is_roce[i] = True
        status[i] = st
        row = block[i]
        _copy(buf, at3 if st == OK else -1, end, row, BLOCK_L3, BLOCK_L4 - BLOCK_L3)
        _copy(buf, at4 if st == OK else -1, end, row, BLOCK_L4, BLOCK_APP_L4 - BLOCK_L4)
        _copy(buf, app_l4[i] if st == OK else -1, end, row, BLOCK_APP_L4, BLOCK_BTH - BLOCK_APP_L4)
        _copy(buf, payload[i] if is_roce[i] else -1, end, row, BLOCK_BTH, BLOCK_WIDTH - BLOCK_BTH)
        if st == OK and inner_l3[i] >= 0:
            _copy(buf, inner_l3[i], end, inner_header[i], 0, INNER_HEADER)


@numba.njit(cache=True, inline="always")
def _copy(buf: np.ndarray, start: int, end: int, row: np.ndarray, column: int, width: int) -> None:
    """row[column : column + width] = the captured bytes from `start` (zeros past `end` or when start < 0)."""
    for k in range(width):
        row[column + k] = buf[start + k] if start >= 0 and start + k < end else 0
