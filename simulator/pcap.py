"""The pcap a collector receives: each record one mirrored copy, ERSPAN-encapsulated by the link's
leaf (outer IPv4 from its loopback), truncated to the snaplen, in time order.

Vectorised: outer headers are per-link templates patched as columns; inner frames are copied from
the template table with one gather per chunk, then PSN, TCP sequence and acknowledgment, IP id, TTL, ECN and the IPv4
checksum are patched in place.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scapy.layers.inet import GRE, IP
from scapy.layers.l2 import Ether
from tqdm import tqdm

from simulator.emissions import Emissions
from simulator.fabric import Fabric
from simulator.routing import Records
from simulator.scenario import Capture
from simulator.templates import TemplateArrays

MAGIC = {"us": 0xA1B2C3D4, "ns": 0xA1B23C4D}
LINKTYPE_ETHERNET = 1
MAX_SNAPLEN = 262144
CHUNK = 200_000
RECORD_HEADER = 16
OUTER_IP = 14  # outer IPv4 header offset
GRE_SEQ = OUTER_IP + 20 + 4
ERSPAN = OUTER_IP + 20 + 8
ERSPAN_TYPE = {2: (0x88BE, 8), 3: (0x22EB, 12)}  # GRE protocol, ERSPAN header length
ERSPAN3_DIRECTION = 0x08  # D bit (egress) in the last byte of the ERSPAN type III header
COLLECTOR_MAC = "02:00:00:ff:00:01"


@dataclass(frozen=True, slots=True)
class Written:
    """What the pcap holds per record, for the truth and the counters."""

    ts_ns: np.ndarray  # int64, the record timestamp as written (µs resolution truncates)
    wire_len: np.ndarray  # int64, monitored frame length on the link
    caplen: np.ndarray  # int64


def ipv4_checksums(headers: np.ndarray) -> np.ndarray:
    """RFC 1071 checksums of (n, 20) IPv4 headers whose checksum bytes are zero."""
    words = (headers[:, 0::2].astype(np.uint32) << 8) | headers[:, 1::2]
    total = words.sum(axis=1)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).astype(np.uint16)


def _put16(target: np.ndarray, column: int, values: np.ndarray) -> None:
    target[:, column] = values >> 8
    target[:, column + 1] = values & 0xFF


class PcapWriter:
    def __init__(self, fabric: Fabric, capture: Capture, templates: TemplateArrays) -> None:
        self.capture = capture
        self.templates = templates
        proto, self.erspan_len = ERSPAN_TYPE[capture.erspan_type]
        self.outer_len = ERSPAN + self.erspan_len
        rows = []
        for link in fabric.links:
            if capture.erspan_type == 2:
                header = struct.pack(">HHI", 0x1000, (3 << 11) | link.session, 49 + link.spine)
            else:
                header = struct.pack(">HHIHH", 0x2000, link.session, 0, 0, 0x0002)  # Gra=01: 100 ns units
            outer = (Ether(src=Fabric.leaf_mac(link.leaf), dst=COLLECTOR_MAC)
                     / IP(src=Fabric.loopback(link.leaf), dst=capture.collector, ttl=64, flags="DF", id=0)
                     / GRE(seqnum_present=1, proto=proto, sequence_number=0))
            rows.append(np.frombuffer(bytes(outer) + header, dtype=np.uint8))
        self.outer = np.stack(rows)

    def write(self, path: Path, records: Records, emissions: Emissions, ce: np.ndarray, *,
              progress: bool = False) -> Written:
        resolution = self.capture.ts_resolution
        ts = records.t_ns if resolution == "ns" else records.t_ns // 1000 * 1000
        template = emissions.template[records.packet]
        wire = self.templates.length[template]
        orig = wire + self.outer_len
        snaplen = self.capture.snaplen or MAX_SNAPLEN
        caplen = np.minimum(orig, snaplen)
        gre_seq = np.empty(len(records), dtype=np.int64)
        by_link = np.argsort(records.link, kind="stable")
        starts = np.searchsorted(records.link[by_link], records.link[by_link])
        gre_seq[by_link] = np.arange(len(records)) - starts
        with path.open("wb") as out:
            out.write(struct.pack("<IHHiIII", MAGIC[resolution], 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
            bounds = range(0, len(records), CHUNK)
            for lo in tqdm(bounds, desc="pcap", unit="chunk", disable=not progress, leave=False):
                rows = slice(lo, lo + CHUNK)
                out.write(self._chunk(records.take(np.arange(lo, min(lo + CHUNK, len(records)))), emissions,
                                      ts[rows], wire[rows], caplen[rows], ce[rows], gre_seq[rows]).tobytes())
        return Written(ts_ns=ts, wire_len=wire, caplen=caplen)

    def _chunk(self, records: Records, emissions: Emissions, ts: np.ndarray, wire: np.ndarray, caplen: np.ndarray,
               ce: np.ndarray, gre_seq: np.ndarray) -> np.ndarray:
        n = len(records)
        size = RECORD_HEADER + caplen
        offset = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
        buf = np.zeros(int(size.sum()), dtype=np.uint8)
        frac = ts % 1_000_000_000 if self.capture.ts_resolution == "ns" else ts % 1_000_000_000 // 1000
        header = np.stack([ts // 1_000_000_000, frac, caplen, wire + self.outer_len], axis=1).astype("<u4")
        buf[offset[:, None] + np.arange(RECORD_HEADER)] = header.view(np.uint8).reshape(n, RECORD_HEADER)
        outer = self.outer[records.link]
        _put16(outer, OUTER_IP + 2, (wire + self.outer_len - OUTER_IP).astype(np.int64))
        _put16(outer, OUTER_IP + 4, gre_seq & 0xFFFF)
        outer[:, OUTER_IP + 10: OUTER_IP + 12] = 0
        _put16(outer, OUTER_IP + 10, ipv4_checksums(outer[:, OUTER_IP: OUTER_IP + 20]).astype(np.int64))
        seq = gre_seq & 0xFFFFFFFF
        for byte in range(4):
            outer[:, GRE_SEQ + byte] = (seq >> (24 - 8 * byte)) & 0xFF
        if self.capture.erspan_type == 3:
            stamp = (ts // 100) & 0xFFFFFFFF
            for byte in range(4):
                outer[:, ERSPAN + 4 + byte] = (stamp >> (24 - 8 * byte)) & 0xFF
            outer[:, ERSPAN + 11] |= np.where(records.from_leaf, ERSPAN3_DIRECTION, 0).astype(np.uint8)
        start = offset + RECORD_HEADER
        buf[start[:, None] + np.arange(self.outer_len)] = outer
        inner = start + self.outer_len
        self._copy_inner(buf, inner, emissions.template[records.packet], caplen - self.outer_len)
        self._patch(buf, inner, caplen - self.outer_len, records, emissions, ce)
        return buf

    def _copy_inner(self, buf: np.ndarray, inner: np.ndarray, template: np.ndarray, length: np.ndarray) -> None:
        total = int(length.sum())
        begin = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
        step = np.arange(total, dtype=np.int64)
        buf[np.repeat(inner - begin, length) + step] = self.templates.data[
            np.repeat(self.templates.offset[template] - begin, length) + step]

    def _patch(self, buf: np.ndarray, inner: np.ndarray, captured: np.ndarray, records: Records,
               emissions: Emissions, ce: np.ndarray) -> None:
        t = self.templates
        template = emissions.template[records.packet]
        packet = records.packet
        hop = records.hop.astype(np.int64)
        self._field(buf, inner, captured, t.psn_off[template], emissions.psn[packet], 3)
        self._field(buf, inner, captured, t.seq_off[template], emissions.seq[packet], 4)
        self._field(buf, inner, captured, t.seq_off[template] + 4, emissions.ack[packet], 4)
        ip = inner + t.ip_off[template]
        v6 = np.flatnonzero(t.ip_version[template] == 6)
        buf[ip[v6] + 7] -= hop[v6].astype(np.uint8)
        v4 = np.flatnonzero(t.ip_version[template] == 4)
        ip4 = ip[v4]
        buf[ip4 + 8] -= hop[v4].astype(np.uint8)
        buf[ip4 + 4] = (packet[v4] >> 8) & 0xFF
        buf[ip4 + 5] = packet[v4] & 0xFF
        buf[ip4[ce[v4]] + 1] |= 3
        buf[ip4 + 10] = 0
        buf[ip4 + 11] = 0
        checksum = ipv4_checksums(buf[ip4[:, None] + np.arange(20)]).astype(np.int64)
        buf[ip4 + 10] = checksum >> 8
        buf[ip4 + 11] = checksum & 0xFF

    @staticmethod
    def _field(buf: np.ndarray, inner: np.ndarray, captured: np.ndarray, field_off: np.ndarray, value: np.ndarray,
               width: int) -> None:
        """Write a big-endian field where the template has it, the packet sets it and the capture kept it."""
        rows = np.flatnonzero((field_off >= 0) & (value >= 0) & (field_off + width <= captured))
        position = inner[rows] + field_off[rows]
        for byte in range(width):
            buf[position + byte] = (value[rows] >> (8 * (width - 1 - byte))) & 0xFF
