"""Vectorised decoder: PacketBatch -> DecodedPackets, numpy over the whole batch after one compiled header walk.

The walk (collectors.decode_walk) finds where each header starts; this module reads the fixed-offset fields
with gathers, attributes packets to links (ERSPAN session, mirror VLAN, then capture interface) and computes
the monitored frame's wire length (DESIGN.md section 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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


def _be16(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (data[at].astype(np.uint16) << 8) | data[at + 1]


def _be24(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (data[at].astype(np.uint32) << 16) | (data[at + 1].astype(np.uint32) << 8) | data[at + 2]


def _be32(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (_be16(data, at).astype(np.uint32) << 16) | _be16(data, at + 2)


def _bytes16(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    return data[at[:, None] + np.arange(16)]


class Decoder:
    """Decodes batches against one topology (None: no link attribution); keeps malformed counts in `stats`."""

    def __init__(self, topology: Topology | None = None) -> None:
        self.topology = topology
        self.stats = DecodeStats()
        self._erspan_links = topology.erspan_table() if topology else np.full(1024, NO_LINK, dtype=np.int16)
        self._vlan_links = topology.vlan_table() if topology else np.full(VLAN_IDS, NO_LINK, dtype=np.int16)
        self._interface_links: dict[tuple[str, ...], np.ndarray] = {}

    def decode(self, batch: PacketBatch) -> DecodedPackets:
        n = len(batch)
        data = batch.data
        status = np.zeros(n, dtype=np.uint8)
        session = np.empty(n, dtype=np.int16)
        vlan_link = np.empty(n, dtype=np.int16)
        frame = np.empty(n, dtype=np.int64)
        vlan = np.empty(n, dtype=np.uint16)
        ethertype = np.empty(n, dtype=np.uint16)
        l3 = np.empty(n, dtype=np.int64)
        ip_version = np.empty(n, dtype=np.uint8)
        proto = np.empty(n, dtype=np.uint8)
        l4 = np.empty(n, dtype=np.int64)
        vni = np.empty(n, dtype=np.uint32)
        app_l3 = np.empty(n, dtype=np.int64)
        app_ip_version = np.empty(n, dtype=np.uint8)
        app_proto = np.empty(n, dtype=np.uint8)
        app_l4 = np.empty(n, dtype=np.int64)
        payload = np.empty(n, dtype=np.int64)
        is_roce = np.empty(n, dtype=np.bool_)
        decode_walk.walk(
            data, batch.offset, batch.caplen, self._vlan_links, status, session, vlan_link, frame, vlan,
            ethertype, l3, ip_version, proto, l4, vni, app_l3, app_ip_version, app_proto, app_l4, payload, is_roce,
        )
        if batch.linktype != LINKTYPE_ETHERNET:
            status[:] = decode_walk.UNSUPPORTED_LINKTYPE
        ok = status == decode_walk.OK
        self._count(status, n)

        src_hi, src_lo, dst_hi, dst_lo = (np.zeros(n, dtype=np.uint64) for _ in range(4))
        v4 = np.flatnonzero(ok & (ip_version == 4))
        src_hi[v4], src_lo[v4] = v4_words(_be32(data, l3[v4] + 12))
        dst_hi[v4], dst_lo[v4] = v4_words(_be32(data, l3[v4] + 16))
        v6 = np.flatnonzero(ok & (ip_version == 6))
        src_hi[v6], src_lo[v6] = v6_words(_bytes16(data, l3[v6] + 8))
        dst_hi[v6], dst_lo[v6] = v6_words(_bytes16(data, l3[v6] + 24))
        arp = np.flatnonzero(ok & (ethertype == protocols.ETH_ARP))
        arp = arp[(_be16(data, l3[arp] + 2) == protocols.ETH_IPV4) & (data[l3[arp] + 4] == 6)
                  & (data[l3[arp] + 5] == 4)]
        src_hi[arp], src_lo[arp] = v4_words(_be32(data, l3[arp] + 14))
        dst_hi[arp], dst_lo[arp] = v4_words(_be32(data, l3[arp] + 24))

        traffic_class = np.zeros(n, dtype=np.uint8)
        traffic_class[v4] = data[l3[v4] + 1]
        traffic_class[v6] = ((data[l3[v6]] & 0x0F) << 4) | (data[l3[v6] + 1] >> 4)

        src_port, dst_port = self._ports(data, ok, proto, l4)
        app_src_port, app_dst_port = self._ports(data, ok, app_proto, app_l4)
        tcp_flags = np.zeros(n, dtype=np.uint8)
        tcp = np.flatnonzero(ok & (proto == protocols.IP_TCP) & (l4 >= 0))
        tcp_flags[tcp] = data[l4[tcp] + 13]

        roce = np.flatnonzero(ok & is_roce)
        bth = payload[roce]
        bth_opcode = np.zeros(n, dtype=np.uint8)
        bth_opcode[roce] = data[bth]
        fecn = np.zeros(n, dtype=np.bool_)
        becn = np.zeros(n, dtype=np.bool_)
        fecn[roce] = (data[bth + 4] & 0x80) != 0
        becn[roce] = (data[bth + 4] & 0x40) != 0
        dqpn = np.zeros(n, dtype=np.uint32)
        dqpn[roce] = _be24(data, bth + 5)
        psn = np.zeros(n, dtype=np.uint32)
        psn[roce] = _be24(data, bth + 9)
        aeth_syndrome = np.full(n, 0xFF, dtype=np.uint8)
        with_aeth = roce[protocols.OPCODE_HAS_AETH[bth_opcode[roce]]]
        aeth_syndrome[with_aeth] = data[payload[with_aeth] + protocols.BTH_HEADER]

        pfc = np.flatnonzero(ok & (ethertype == protocols.ETH_MAC_CONTROL))
        pfc = pfc[_be16(data, l3[pfc]) == protocols.PFC_OPCODE]
        pfc_enable = np.zeros(n, dtype=np.uint8)
        pfc_enable[pfc] = data[l3[pfc] + 3]
        pfc_quanta = np.zeros((n, 8), dtype=np.uint16)
        if len(pfc):
            quanta = data[l3[pfc][:, None] + 4 + np.arange(16)].astype(np.uint16)
            pfc_quanta[pfc] = (quanta[:, 0::2] << 8) | quanta[:, 1::2]

        link = self._links(batch, session, vlan_link)
        direction = np.full(n, UNKNOWN, dtype=np.int8)
        if self.topology is not None:
            direction = self.topology.directions(
                link, self.topology.leaf_index(src_hi, src_lo), self.topology.leaf_index(dst_hi, dst_lo)
            )
        end = batch.offset + batch.caplen
        payload_caplen = np.where(ok & (payload >= 0), end - payload, 0).astype(np.int32)
        return DecodedPackets(
            ok=ok,
            ts_ns=batch.ts_ns,
            link=link,
            direction=direction,
            erspan_session=np.where(ok, session, -1).astype(np.int16),
            wire_len=self._wire_len(data, batch, ok, frame, vlan_link, l3, ip_version),
            vlan=np.where(ok, vlan, 0).astype(np.uint16),
            ethertype=np.where(ok, ethertype, 0).astype(np.uint16),
            src_hi=src_hi,
            src_lo=src_lo,
            dst_hi=dst_hi,
            dst_lo=dst_lo,
            proto=np.where(ok, proto, 0).astype(np.uint8),
            src_port=src_port,
            dst_port=dst_port,
            dscp=traffic_class >> 2,
            ecn=traffic_class & 3,
            tcp_flags=tcp_flags,
            vni=np.where(ok, vni, 0).astype(np.uint32),
            is_roce=ok & is_roce,
            bth_opcode=bth_opcode,
            dqpn=dqpn,
            psn=psn,
            fecn=fecn,
            becn=becn,
            aeth_syndrome=aeth_syndrome,
            pfc_enable=pfc_enable,
            pfc_quanta=pfc_quanta,
            app_proto=np.where(ok, app_proto, 0).astype(np.uint8),
            app_src_port=app_src_port,
            app_dst_port=app_dst_port,
            payload_offset=np.where(ok, payload, -1),
            payload_caplen=payload_caplen,
        )

    def _count(self, status: np.ndarray, n: int) -> None:
        self.stats.packets += n
        counts = np.bincount(status, minlength=len(decode_walk.MALFORMED_REASONS))
        for reason, count in zip(decode_walk.MALFORMED_REASONS[1:], counts[1:], strict=True):
            self.stats.malformed[reason] += int(count)

    @staticmethod
    def _ports(data: np.ndarray, ok: np.ndarray, proto: np.ndarray, l4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP/UDP ports at `l4` (0 for other protocols and packets without an L4 header)."""
        src = np.zeros(len(ok), dtype=np.uint16)
        dst = np.zeros(len(ok), dtype=np.uint16)
        rows = np.flatnonzero(ok & (l4 >= 0) & ((proto == protocols.IP_TCP) | (proto == protocols.IP_UDP)))
        src[rows] = _be16(data, l4[rows])
        dst[rows] = _be16(data, l4[rows] + 2)
        return src, dst

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

    @staticmethod
    def _wire_len(
        data: np.ndarray, batch: PacketBatch, ok: np.ndarray, frame: np.ndarray, vlan_link: np.ndarray,
        l3: np.ndarray, ip_version: np.ndarray,
    ) -> np.ndarray:
        """Original length of the monitored frame: the recorded length minus mirror encapsulation, or, when the
        capture or the mirror truncated the frame, the IP total length plus the L2 header."""
        mirror_tag = np.where(vlan_link >= 0, protocols.VLAN_TAG, 0)
        encapsulation = frame - batch.offset + mirror_tag
        recorded = batch.wirelen.astype(np.int64) - encapsulation
        ip_length = np.zeros(len(ok), dtype=np.int64)
        v4 = np.flatnonzero(ok & (ip_version == 4))
        ip_length[v4] = _be16(data, l3[v4] + 2)
        v6 = np.flatnonzero(ok & (ip_version == 6))
        ip_length[v6] = _be16(data, l3[v6] + 4).astype(np.int64) + 40
        from_ip = l3 - frame - mirror_tag + ip_length
        truncated = (batch.caplen < batch.wirelen) | (recorded < from_ip)
        wire = np.where((ip_version > 0) & truncated, from_ip, recorded)
        return np.where(ok, np.maximum(wire, 0), 0).astype(np.uint32)
