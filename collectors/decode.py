"""Vectorised decoder: PacketBatch -> DecodedPackets, numpy over the whole batch after one compiled header walk.

The walk (collectors.decode_walk) finds where each header starts; this module reads the fixed-offset fields
with gathers, attributes packets to links (ERSPAN session, mirror VLAN, then capture interface) and computes
the monitored frame's wire length (DESIGN.md section 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from collectors import decode_walk, protocols
from collectors.packets import DecodedPackets, PacketBatch
from pipeline.addresses import v4_words, v6_words
from pipeline.topology import NO_LINK, UNKNOWN, VLAN_IDS, Topology

LINKTYPE_ETHERNET = 1


@dataclass
class DecodeStats:
    """Packets seen and malformed packets by reason (decode_walk.MALFORMED_REASONS, without 'ok')."""

    packets: int = 0
    malformed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(decode_walk.MALFORMED_REASONS[1:], 0))

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


def _window(data: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """(len(at), width) bytes starting at each offset, copied row by row in one gather (one pass of cache
    misses rather than one per field). Bytes past the end of `data` read as its last byte; the walk has
    checked which bytes belong to the packet."""
    limit = len(data) - width
    if limit < 0:
        return data[np.minimum(at[:, None] + np.arange(width), len(data) - 1)]
    rows = sliding_window_view(data, width)[np.minimum(at, limit)]
    late = np.flatnonzero(at > limit)
    if len(late):
        rows[late] = data[np.minimum(at[late, None] + np.arange(width), len(data) - 1)]
    return rows


def _be16(window: np.ndarray, at: int) -> np.ndarray:
    return (window[:, at].astype(np.uint16) << 8) | window[:, at + 1]


def _be24(window: np.ndarray, at: int) -> np.ndarray:
    return (_be16(window, at).astype(np.uint32) << 8) | window[:, at + 2]


def _be32(window: np.ndarray, at: int) -> np.ndarray:
    return (_be16(window, at).astype(np.uint32) << 16) | _be16(window, at + 2)


class Decoder:
    """Decodes batches against one topology (None: no link attribution); keeps malformed counts in `stats`."""

    def __init__(self, topology: Topology | None = None) -> None:
        self.topology = topology
        self.stats = DecodeStats()
        self._erspan_links = topology.erspan_table() if topology else np.full(1024, NO_LINK, dtype=np.int16)
        self._vlan_links = topology.vlan_table() if topology else np.full(VLAN_IDS, NO_LINK, dtype=np.int16)
        self._interface_links: dict[tuple[str, ...], np.ndarray] = {}

    def decode(self, batch: PacketBatch) -> DecodedPackets:
        headers = decode_walk.locate(batch.data, batch.offset, batch.caplen, self._vlan_links)
        if batch.linktype != LINKTYPE_ETHERNET:
            headers.status[:] = decode_walk.UNSUPPORTED_LINKTYPE
        ok = headers.status == decode_walk.OK
        self._count(headers.status)
        data = batch.data
        src_hi, src_lo, dst_hi, dst_lo, traffic_class, ip_length = _ip_fields(data, ok, headers)
        src_port, dst_port, tcp_flags = _l4_fields(data, ok, headers.proto, headers.l4)
        app_src_port, app_dst_port, _ = _l4_fields(data, ok, headers.app_proto, headers.app_l4)
        bth = _bth_fields(data, ok & headers.is_roce, headers.payload)
        pfc_enable, pfc_quanta = _pfc_fields(data, ok, headers)
        link = self._links(batch, headers.session, headers.vlan_link)
        direction = np.full(len(batch), UNKNOWN, dtype=np.int8)
        if self.topology is not None:
            direction = self.topology.directions(
                link, self.topology.leaf_index(src_hi, src_lo), self.topology.leaf_index(dst_hi, dst_lo)
            )
        end = batch.offset + batch.caplen
        return DecodedPackets(
            ok=ok,
            ts_ns=batch.ts_ns,
            link=link,
            direction=direction,
            erspan_session=np.where(ok, headers.session, -1).astype(np.int16),
            wire_len=_wire_len(batch, ok, headers, ip_length),
            vlan=np.where(ok, headers.vlan, 0).astype(np.uint16),
            ethertype=np.where(ok, headers.ethertype, 0).astype(np.uint16),
            src_hi=src_hi,
            src_lo=src_lo,
            dst_hi=dst_hi,
            dst_lo=dst_lo,
            proto=np.where(ok, headers.proto, 0).astype(np.uint8),
            src_port=src_port,
            dst_port=dst_port,
            dscp=traffic_class >> 2,
            ecn=traffic_class & 3,
            tcp_flags=tcp_flags,
            vni=np.where(ok, headers.vni, 0).astype(np.uint32),
            is_roce=ok & headers.is_roce,
            **bth,
            pfc_enable=pfc_enable,
            pfc_quanta=pfc_quanta,
            app_proto=np.where(ok, headers.app_proto, 0).astype(np.uint8),
            app_src_port=app_src_port,
            app_dst_port=app_dst_port,
            payload_offset=np.where(ok, headers.payload, -1),
            payload_caplen=np.where(ok & (headers.payload >= 0), end - headers.payload, 0).astype(np.int32),
        )

    def _count(self, status: np.ndarray) -> None:
        self.stats.packets += len(status)
        counts = np.bincount(status, minlength=len(decode_walk.MALFORMED_REASONS))
        for reason, count in zip(decode_walk.MALFORMED_REASONS[1:], counts[1:], strict=True):
            self.stats.malformed[reason] += int(count)

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


def _ip_fields(data: np.ndarray, ok: np.ndarray, headers: decode_walk.Headers) -> tuple[np.ndarray, ...]:
    """Addresses (IPv4 and ARP sender/target as v4-mapped words), traffic class and IP total length."""
    n = len(ok)
    src_hi, src_lo, dst_hi, dst_lo = (np.zeros(n, dtype=np.uint64) for _ in range(4))
    traffic_class = np.zeros(n, dtype=np.uint8)
    ip_length = np.zeros(n, dtype=np.int64)
    ip = np.flatnonzero(ok & (headers.ip_version > 0))
    header = _window(data, headers.l3[ip], 40)  # the IPv4 header without options, or the fixed IPv6 header
    four = headers.ip_version[ip] == 4
    v4, v6 = ip[four], ip[~four]
    src_hi[v4], src_lo[v4] = v4_words(_be32(header[four], 12))
    dst_hi[v4], dst_lo[v4] = v4_words(_be32(header[four], 16))
    src_hi[v6], src_lo[v6] = v6_words(header[~four, 8:24])
    dst_hi[v6], dst_lo[v6] = v6_words(header[~four, 24:40])
    traffic_class[ip] = np.where(four, header[:, 1], ((header[:, 0] & 0x0F) << 4) | (header[:, 1] >> 4))
    ip_length[ip] = np.where(four, _be16(header, 2), _be16(header, 4).astype(np.int64) + 40)
    arp = np.flatnonzero(ok & (headers.ethertype == protocols.ETH_ARP))
    header = _window(data, headers.l3[arp], 28)
    ipv4_arp = (_be16(header, 2) == protocols.ETH_IPV4) & (header[:, 4] == 6) & (header[:, 5] == 4)
    arp, header = arp[ipv4_arp], header[ipv4_arp]
    src_hi[arp], src_lo[arp] = v4_words(_be32(header, 14))
    dst_hi[arp], dst_lo[arp] = v4_words(_be32(header, 24))
    return src_hi, src_lo, dst_hi, dst_lo, traffic_class, ip_length


def _l4_fields(
    data: np.ndarray, ok: np.ndarray, proto: np.ndarray, l4: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TCP/UDP ports and TCP flags at `l4` (0 for other protocols and packets without an L4 header)."""
    src = np.zeros(len(ok), dtype=np.uint16)
    dst = np.zeros(len(ok), dtype=np.uint16)
    flags = np.zeros(len(ok), dtype=np.uint8)
    rows = np.flatnonzero(ok & (l4 >= 0) & ((proto == protocols.IP_TCP) | (proto == protocols.IP_UDP)))
    header = _window(data, l4[rows], 14)
    src[rows] = _be16(header, 0)
    dst[rows] = _be16(header, 2)
    flags[rows] = np.where(proto[rows] == protocols.IP_TCP, header[:, 13], 0)
    return src, dst, flags


def _bth_fields(data: np.ndarray, roce: np.ndarray, payload: np.ndarray) -> dict[str, np.ndarray]:
    """RoCEv2 BTH fields and the AETH syndrome (0xFF when the opcode carries no AETH)."""
    n = len(roce)
    rows = np.flatnonzero(roce)
    header = _window(data, payload[rows], protocols.BTH_HEADER + 1)  # BTH and the AETH syndrome byte
    fields = {
        "bth_opcode": np.zeros(n, dtype=np.uint8), "dqpn": np.zeros(n, dtype=np.uint32),
        "psn": np.zeros(n, dtype=np.uint32), "fecn": np.zeros(n, dtype=np.bool_), "becn": np.zeros(n, dtype=np.bool_),
        "aeth_syndrome": np.full(n, 0xFF, dtype=np.uint8),
    }
    fields["bth_opcode"][rows] = header[:, 0]
    fields["fecn"][rows] = (header[:, 4] & 0x80) != 0
    fields["becn"][rows] = (header[:, 4] & 0x40) != 0
    fields["dqpn"][rows] = _be24(header, 5)
    fields["psn"][rows] = _be24(header, 9)
    with_aeth = protocols.OPCODE_HAS_AETH[header[:, 0]]
    fields["aeth_syndrome"][rows[with_aeth]] = header[with_aeth, protocols.BTH_HEADER]
    return fields


def _pfc_fields(data: np.ndarray, ok: np.ndarray, headers: decode_walk.Headers) -> tuple[np.ndarray, np.ndarray]:
    """PFC class-enable vector and the 8 pause quanta of MAC-control frames with the PFC opcode."""
    pfc = np.flatnonzero(ok & (headers.ethertype == protocols.ETH_MAC_CONTROL))
    header = _window(data, headers.l3[pfc], protocols.PFC_FRAME)
    pause = _be16(header, 0) == protocols.PFC_OPCODE
    pfc, header = pfc[pause], header[pause].astype(np.uint16)
    enable = np.zeros(len(ok), dtype=np.uint8)
    enable[pfc] = header[:, 3]
    quanta = np.zeros((len(ok), 8), dtype=np.uint16)
    quanta[pfc] = (header[:, 4::2] << 8) | header[:, 5::2]
    return enable, quanta


def _wire_len(batch: PacketBatch, ok: np.ndarray, headers: decode_walk.Headers, ip_length: np.ndarray) -> np.ndarray:
    """Original length of the monitored frame: the recorded length minus mirror encapsulation, or, when the
    capture or the mirror truncated the frame, the IP total length plus the L2 header."""
    mirror_tag = np.where(headers.vlan_link >= 0, protocols.VLAN_TAG, 0)
    encapsulation = headers.frame - batch.offset + mirror_tag
    recorded = batch.wirelen.astype(np.int64) - encapsulation
    from_ip = headers.l3 - headers.frame - mirror_tag + ip_length
    truncated = (batch.caplen < batch.wirelen) | (recorded < from_ip)
    wire = np.where((headers.ip_version > 0) & truncated, from_ip, recorded)
    return np.where(ok, np.maximum(wire, 0), 0).astype(np.uint32)
