"""Vectorised decoder: PacketBatch -> DecodedPackets, over the whole batch after one compiled header walk.

The walk (collectors.decode_walk) finds where each header starts and copies the header bytes into a compact
block per packet; this module reads the fixed-offset fields from them (the IP, L4 and BTH fields and the
monitored frame's wire length, DESIGN.md section 5, in compiled passes: collectors.decode_fields; the rarer
ones as whole-column numpy operations) and attributes packets to links (ERSPAN session, mirror VLAN, then
capture interface).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from collectors import decode_fields, decode_walk, protocols
from collectors import header_table as h
from collectors.decode_walk import BLOCK_APP_L4, BLOCK_BTH, BLOCK_L3, BLOCK_L4
from collectors.packets import DecodedPackets, PacketBatch
from collectors.wire import column16, column32
from pipeline.addresses import V4_MAPPED_LO, v6_words
from pipeline.topology import NO_LINK, UNKNOWN, VLAN_IDS, Topology

log = logging.getLogger(__name__)
SWITCH_CLOCK_TOLERANCE_NS = 1_000_000_000  # a switch timestamp further from the capture time is not trusted
HEADER_FIELDS: dict[str, type[np.generic]] = {  # decode_fields.header_fields' outputs, in its order
    "src_hi": np.uint64, "src_lo": np.uint64, "dst_hi": np.uint64, "dst_lo": np.uint64, "traffic_class": np.uint8,
    "ip_length": np.int64, "src_port": np.uint16, "dst_port": np.uint16, "tcp_flags": np.uint8,
    "app_src_port": np.uint16, "app_dst_port": np.uint16, "app_tcp_flags": np.uint8, "bth_opcode": np.uint8,
    "fecn": np.bool_, "becn": np.bool_, "dqpn": np.uint32, "psn": np.uint32, "aeth_syndrome": np.uint8,
}


@dataclass
class DecodeStats:
    """Packets seen, malformed packets by reason (decode_walk.MALFORMED_REASONS, without 'ok') and packets of
    link types the decoder does not open, by link type number (not malformed: nothing was wrong with them)."""

    packets: int = 0
    malformed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(decode_walk.MALFORMED_REASONS[1:], 0))
    unsupported_linktypes: dict[int, int] = field(default_factory=dict)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


class Decoder:
    """Decodes batches against one topology (None: no link attribution); keeps malformed counts in `stats`."""

    def __init__(self, topology: Topology | None = None) -> None:
        self.topology = topology
        self.stats = DecodeStats()
        self._erspan_links = topology.erspan_table() if topology else np.full(1024, NO_LINK, dtype=np.int16)
        self._vlan_links = topology.vlan_table() if topology else np.full(VLAN_IDS, NO_LINK, dtype=np.int16)
        self._interface_links: dict[tuple[str, ...], np.ndarray] = {}

    def decode(self, batch: PacketBatch) -> DecodedPackets:
        if batch.linktype in protocols.LINKTYPES:
            headers = decode_walk.locate(batch.data, batch.offset, batch.caplen, self._vlan_links, batch.linktype)
        else:
            headers = decode_walk.unsupported(len(batch))
            self._unsupported(batch.linktype, len(batch))
        ok = headers.status == decode_walk.OK
        self._count(headers.status)
        fields = _header_fields(ok, headers)
        outer = tuple(fields[name] for name in ("src_hi", "src_lo", "dst_hi", "dst_lo"))
        src_hi, src_lo, dst_hi, dst_lo = outer
        src_port, dst_port, tcp_flags = fields["src_port"], fields["dst_port"], fields["tcp_flags"]
        inner = ok & (headers.inner_l3 >= 0)  # a tunnel's inner flow is the flow; the outer endpoints are kept
        walked = _walk_fields(batch, ok, headers, fields["traffic_class"])
        proto = walked["proto"]
        if inner.any():
            src_hi, src_lo, dst_hi, dst_lo = _inner_addresses(inner, headers.inner_header, outer)
            proto = np.where(inner, headers.app_proto, proto).astype(np.uint8)
            src_port = np.where(inner, fields["app_src_port"], src_port).astype(np.uint16)
            dst_port = np.where(inner, fields["app_dst_port"], dst_port).astype(np.uint16)
            tcp_flags = np.where(inner, fields["app_tcp_flags"], tcp_flags).astype(np.uint8)
        ts_ns, switch_timed = _packet_time(batch.ts_ns, ok, headers)
        pfc_enable, pfc_quanta = _pfc_fields(ok, headers)
        link = self._links(batch, headers.session, headers.vlan_link)
        direction = np.full(len(batch), UNKNOWN, dtype=np.int8)
        if self.topology is not None:
            direction = self.topology.directions(link, *outer)  # a tunnel's outer endpoints are the fabric's hosts
        return DecodedPackets(
            ok=ok,
            ts_ns=ts_ns,
            capture_ts_ns=batch.ts_ns,
            switch_timed=switch_timed,
            link=link,
            direction=direction,
            wire_len=_wire_len(batch, ok, headers, fields["ip_length"]),
            src_hi=src_hi,
            src_lo=src_lo,
            dst_hi=dst_hi,
            dst_lo=dst_lo,
            **_outer_endpoints(inner, outer),
            src_port=src_port,
            dst_port=dst_port,
            tcp_flags=tcp_flags,
            **{name: fields[name] for name in ("bth_opcode", "fecn", "becn", "dqpn", "psn", "aeth_syndrome")},
            pfc_enable=pfc_enable,
            pfc_quanta=pfc_quanta,
            app_src_port=fields["app_src_port"],
            app_dst_port=fields["app_dst_port"],
            **{**walked, "proto": proto},
        )

    def _count(self, status: np.ndarray) -> None:
        self.stats.packets += len(status)
        counts = np.bincount(status, minlength=decode_walk.UNSUPPORTED_LINKTYPE + 1)
        for reason, count in zip(decode_walk.MALFORMED_REASONS[1:], counts[1:], strict=False):
            self.stats.malformed[reason] += int(count)

    def _unsupported(self, linktype: int, packets: int) -> None:
        """Counted by link type and logged once per link type: a file of another link layer is not damage."""
        if linktype not in self.stats.unsupported_linktypes:
            log.warning("link type %d is not supported (%s are): its packets are counted, not decoded", linktype,
                        ", ".join(map(str, sorted(protocols.LINKTYPES))))
        self.stats.unsupported_linktypes[linktype] = self.stats.unsupported_linktypes.get(linktype, 0) + packets

    def _links(self, batch: PacketBatch, session: np.ndarray, vlan_link: np.ndarray) -> np.ndarray:
        """Link index: ERSPAN session first, then a mirror VLAN, then the capture interface's name."""
        by_interface = self._interface_table(batch.interfaces)[batch.interface]
        link = np.where(vlan_link >= 0, vlan_link, by_interface)
        mirrored = session >= 0
        link[mirrored] = self._erspan_links[session[mirrored]]
        return link.astype(np.int16)

    def _interface_table(self, names: tuple[str, ...]) -> np.ndarray:
        table = self._interface_links.get(names)
        if table is None:
            index = {link.id: link.index for link in self.topology.links} if self.topology else {}
            interfaces = self.topology.interfaces if self.topology else {}
            table = np.array([index.get(interfaces.get(name, ""), NO_LINK) for name in names] or [NO_LINK],
                             dtype=np.int16)
            self._interface_links[names] = table
        return table


def _inner_addresses(
    inner: np.ndarray, block: np.ndarray, outer: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    """(src_hi, src_lo, dst_hi, dst_lo): the tunnel's inner IP addresses on `inner` rows (`block` holds the
    inner IP headers row-major), the outer ones elsewhere."""
    words = tuple(column.copy() for column in outer)
    rows = np.flatnonzero(inner)
    head = block[rows].T
    v4 = (head[0] >> 4) == 4
    for column, v4_at, v6_at in ((0, h.IPV4_SOURCE, h.IPV6_SOURCE), (2, h.IPV4_DESTINATION, h.IPV6_DESTINATION)):
        hi, lo = v6_words(head[v6_at : v6_at + 16].T)
        words[column][rows] = np.where(v4, 0, hi)
        words[column + 1][rows] = np.where(v4, column32(head, v4_at).astype(np.uint64) | V4_MAPPED_LO, lo)
    return words


def _outer_endpoints(inner: np.ndarray, outer: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    """The tunnel endpoints of packets whose flow is a tunnel's inner flow, 0 for the others."""
    names = ("outer_src_hi", "outer_src_lo", "outer_dst_hi", "outer_dst_lo")
    if not inner.any():
        return {name: np.zeros(len(inner), dtype=np.uint64) for name in names}
    return {name: np.where(inner, words, 0).astype(np.uint64) for name, words in zip(names, outer, strict=True)}


def _packet_time(capture_ns: np.ndarray, ok: np.ndarray, headers: decode_walk.Headers) -> tuple[np.ndarray, ...]:
    """Packet time: the switch's ERSPAN III timestamp where it stamped the copy (100 µs, 100 ns or IEEE 1588
    granularity), else the capture time; and which packets are switch-timed. The 32-bit stamp wraps (every
    4.97 days, 429 s, or each second for IEEE 1588's nanoseconds), so it is placed in the period nearest the
    capture time. A stamp further than SWITCH_CLOCK_TOLERANCE_NS from the capture time is a switch clock
    that is not synchronised (or a switch that leaves the field 0): the capture time is kept."""
    stamped = headers.switch_granularity >= 0
    if not stamped.any():
        return capture_ns, stamped
    granularity = headers.switch_granularity.astype(np.int64)
    unit = np.array(protocols.ERSPAN_GRANULARITY_NS, dtype=np.int64)[np.maximum(granularity, 0)]
    stamped &= ok & (unit > 0)
    period = np.where(granularity == protocols.ERSPAN_GRANULARITY_1588, 1_000_000_000, unit << 32)
    stamp = headers.switch_stamp * unit
    half = period // 2
    switch = capture_ns + np.mod(stamp - capture_ns + half, np.maximum(period, 1)) - half
    timed = stamped & (np.abs(capture_ns - switch) <= SWITCH_CLOCK_TOLERANCE_NS)
    return np.where(timed, switch, capture_ns), timed


def _header_fields(ok: np.ndarray, headers: decode_walk.Headers) -> dict[str, np.ndarray]:
    """IP addresses (IPv4 and ARP as v4-mapped words), traffic class, IP length, the ports and TCP flags of the
    L4 header at `l4` and of the innermost one (app_*), and the RoCEv2 BTH fields with the AETH syndrome
    (decode_fields.header_fields)."""
    fields = {name: np.empty(len(ok), dtype=kind) for name, kind in HEADER_FIELDS.items()}
    decode_fields.header_fields(ok, headers.block, BLOCK_L3, BLOCK_L4, BLOCK_APP_L4, BLOCK_BTH,
                                headers.ip_version, headers.ethertype, headers.proto, headers.l4,
                                headers.app_proto, headers.app_l4, headers.is_roce, protocols.OPCODE_HAS_AETH,
                                *fields.values())
    return fields


WALK_FIELDS: dict[str, type[np.generic]] = {  # decode_fields.walk_fields' outputs, in its order
    "erspan_session": np.int16, "vlan": np.uint16, "ethertype": np.uint16, "proto": np.uint8, "vni": np.uint32,
    "vxlan": np.bool_, "is_roce": np.bool_, "app_proto": np.uint8, "payload_offset": np.int64,
    "payload_caplen": np.int32, "dscp": np.uint8, "ecn": np.uint8,
}


def _walk_fields(batch: PacketBatch, ok: np.ndarray, headers: decode_walk.Headers,
                 traffic_class: np.ndarray) -> dict[str, np.ndarray]:
    """The walk's own columns as DecodedPackets holds them (decode_fields.walk_fields)."""
    walked = {name: np.empty(len(ok), dtype=kind) for name, kind in WALK_FIELDS.items()}
    decode_fields.walk_fields(ok, batch.offset, batch.caplen, traffic_class, headers.session, headers.vlan,
                              headers.ethertype, headers.proto, headers.vni, headers.vxlan, headers.is_roce,
                              headers.app_proto, headers.payload, tuple(walked.values()))
    return walked


def _pfc_fields(ok: np.ndarray, headers: decode_walk.Headers) -> tuple[np.ndarray, np.ndarray]:
    """PFC class-enable vector and the 8 pause quanta of MAC-control frames with the PFC opcode."""
    enable = np.zeros(len(ok), dtype=np.uint8)
    quanta = np.zeros((len(ok), 8), dtype=np.uint16)
    control = np.flatnonzero(ok & (headers.ethertype == protocols.ETH_MAC_CONTROL))
    frame = headers.block[control, BLOCK_L3 : BLOCK_L3 + h.PFC_FRAME].T  # row k: byte k of every such frame
    pfc = column16(frame, h.PFC_OPCODE_AT) == protocols.PFC_OPCODE
    rows, frame = control[pfc], frame[:, pfc]
    enable[rows] = frame[h.PFC_CLASS_ENABLE]
    for priority in range(8):
        quanta[rows, priority] = column16(frame, h.PFC_QUANTA + 2 * priority)
    return enable, quanta


def _wire_len(batch: PacketBatch, ok: np.ndarray, headers: decode_walk.Headers, ip_length: np.ndarray) -> np.ndarray:
    """Original length of the monitored frame (decode_fields.wire_len says how)."""
    wire = np.empty(len(ok), dtype=np.uint32)
    decode_fields.wire_len(ok, batch.offset, batch.caplen, batch.wirelen, headers.frame, headers.l3,
                           headers.vlan_link, headers.ip_version, ip_length, wire)
    return wire
