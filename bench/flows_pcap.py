"""A pcap of N distinct RoCE flows, one ERSPAN-mirrored packet each, built by tiling one template with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.roce import BTH
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether

PCAP_HEADER = np.frombuffer(
    np.array([0xA1B2C3D4], dtype="<u4").tobytes() + np.array([2, 4], dtype="<u2").tobytes()
    + np.array([0, 0, 65535, 1], dtype="<u4").tobytes(),
    dtype=np.uint8,
)
START_S = 1_767_225_600


def template() -> tuple[bytes, int, int]:
    """The frame, and the offsets of the inner UDP source port and of the BTH destination QP."""
    inner = (
        Ether(src="02:00:00:00:01:01", dst="02:00:00:00:02:01")
        / IP(src="10.0.1.11", dst="10.0.2.11", tos=0x6A)
        / UDP(sport=49152, dport=4791)
        / BTH(opcode=0x0A, dqpn=1, psn=0)
        / (b"\0" * 64)
    )
    outer = Ether() / IP(src="10.254.0.1", dst="198.51.100.10") / GRE(seqnum_present=1, sequence_number=1)
    frame = bytes(outer / ERSPAN_II(session_id=11) / inner)
    inner_at = len(frame) - len(bytes(inner))
    udp_at = inner_at + 14 + 20
    return frame, udp_at, udp_at + 8 + 5


def write_distinct_flows(path: Path, flows: int) -> None:
    frame, sport_at, dqpn_at = template()
    size = len(frame)
    records = np.empty((flows, 16 + size), dtype=np.uint8)
    records[:, 16:] = np.frombuffer(frame, dtype=np.uint8)
    header = np.zeros((flows, 4), dtype="<u4")
    header[:, 0] = START_S
    header[:, 1] = np.arange(flows) % 1_000_000 // 4  # all within one export interval
    header[:, 2] = size
    header[:, 3] = size
    records[:, :16] = header.view(np.uint8)
    index = np.arange(flows, dtype=np.uint32)
    records[:, 16 + sport_at] = 0xC0 | ((index >> 24) & 0x3F)
    records[:, 16 + sport_at + 1] = (index >> 16) & 0xFF
    records[:, 16 + dqpn_at] = (index >> 16) & 0xFF
    records[:, 16 + dqpn_at + 1] = (index >> 8) & 0xFF
    records[:, 16 + dqpn_at + 2] = index & 0xFF
    with path.open("wb") as out:
        out.write(PCAP_HEADER.tobytes())
        out.write(records.tobytes())
