"""Packet templates: each frame built once with scapy, then stacked into arrays the writer patches.

Per packet only a few fields change (PSN, TCP sequence, IP id, TTL, ECN, checksum); the writer
copies a template's bytes and patches those columns, which is what makes ≥100k packets/s possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet

MIN_FRAME = 60  # Ethernet minimum without FCS: shorter frames are padded, as switches do
BTH_PSN = 9  # offset of the 24-bit PSN inside the BTH
ROCE_DATA_OPCODES = frozenset({0x00, 0x01, 0x02, 0x04, 0x06, 0x07, 0x08, 0x0A})
OPCODE_ACK = 0x11
OPCODE_CNP = 0x81


@dataclass(frozen=True, slots=True)
class TemplateArrays:
    """All templates stacked: frame t is `data[offset[t] : offset[t] + length[t]]`; -1 = field absent."""

    data: np.ndarray  # uint8
    offset: np.ndarray  # int64
    length: np.ndarray  # int64, wire length of the monitored frame
    ip_off: np.ndarray  # int64, monitored IP header
    ip_version: np.ndarray  # int8, 0 when not IP
    psn_off: np.ndarray  # int64, BTH PSN
    seq_off: np.ndarray  # int64, TCP sequence number
    opcode: np.ndarray  # int16, BTH opcode, -1 when not RoCE
    ecn: np.ndarray  # uint8, ECN bits of the monitored IP header


class TemplateTable:
    def __init__(self) -> None:
        self._frames: list[bytes] = []
        self._meta: list[tuple[int, int, int, int, int, int]] = []

    def add(self, packet: Packet, *, bth_off: int = -1, opcode: int = -1) -> int:
        """Register a frame; `bth_off` is the BTH's offset for RoCEv2 frames built as raw UDP payload."""
        frame = bytes(packet)
        ip_off, version, ecn = -1, 0, 0
        if packet.haslayer(IP):
            ip_off, version, ecn = len(frame) - len(bytes(packet[IP])), 4, packet[IP].tos & 3
        elif packet.haslayer(IPv6):
            ip_off, version, ecn = len(frame) - len(bytes(packet[IPv6])), 6, packet[IPv6].tc & 3
        seq_off = len(frame) - len(bytes(packet[TCP])) + 4 if packet.haslayer(TCP) else -1
        psn_off = bth_off + BTH_PSN if bth_off >= 0 else -1
        if len(frame) < MIN_FRAME:
            frame += bytes(MIN_FRAME - len(frame))
        self._frames.append(frame)
        self._meta.append((ip_off, version, psn_off, seq_off, opcode, ecn))
        return len(self._frames) - 1

    def arrays(self) -> TemplateArrays:
        lengths = np.array([len(frame) for frame in self._frames], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        meta = np.array(self._meta, dtype=np.int64).reshape(-1, 6)
        return TemplateArrays(
            data=np.frombuffer(b"".join(self._frames), dtype=np.uint8),
            offset=offsets,
            length=lengths,
            ip_off=meta[:, 0],
            ip_version=meta[:, 1].astype(np.int8),
            psn_off=meta[:, 2],
            seq_off=meta[:, 3],
            opcode=meta[:, 4].astype(np.int16),
            ecn=meta[:, 5].astype(np.uint8),
        )

    def __len__(self) -> int:
        return len(self._frames)

