"""Build a batch buffer and its DecodedPackets columns straight from scapy packets.

DPI tests use this instead of the decoder, so they check DPI alone: the columns DPI reads (EtherType, outer
and innermost protocol/ports, VNI, BTH, PFC enable vector, payload offset and captured length) are taken
from scapy's own dissection of each frame, truncated to an optional snaplen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scapy.contrib.mac_control import MACControlClassBasedFlowControl
from scapy.contrib.roce import BTH
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

from collectors.packets import DecodedPackets

BTH_LEN = 12


def _offset_of(raw: bytes, layer: Packet) -> int:
    """Start of `layer` in the frame: built frames carry no trailer, so it ends where the frame ends."""
    return len(raw) - len(bytes(layer))


def _ip_proto(layer: Packet) -> int:
    return int(layer.proto) if isinstance(layer, IP) else int(layer.nh)


def _columns(frame: Packet) -> tuple[bytes, dict[str, int | bool], int, int, int]:
    """(frame bytes, its columns as if fully captured, payload start, end of the BTH, start of the inner L4
    header of a VXLAN frame) from scapy's dissection. A VXLAN frame's flow key is its inner flow's; the
    outer key is kept under `outer_proto`/`outer_src_port`/`outer_dst_port` for frames cut before the inner
    L4 header, whose key stays the outer one."""
    raw = bytes(frame)
    packet = Ether(raw)
    row: dict[str, int | bool] = {"ethertype": int(packet.type)}
    layer = packet
    while isinstance(layer.payload, Dot1Q):
        layer = layer.payload
        row["ethertype"] = int(layer.type)
    ips = [layer for layer in packet.iterpayloads() if isinstance(layer, IP | IPv6)]
    l4s = [layer for layer in packet.iterpayloads() if isinstance(layer, TCP | UDP) and layer.underlayer in ips]
    payload_start = len(raw)
    inner_l4_start = 0
    if ips:
        row["proto"] = _ip_proto(ips[0])
        row["app_proto"] = _ip_proto(ips[-1])
    if l4s:
        row["src_port"], row["dst_port"] = int(l4s[0].sport), int(l4s[0].dport)
        inner = l4s[-1]
        row["app_src_port"], row["app_dst_port"] = int(inner.sport), int(inner.dport)
        header = 8 if isinstance(inner, UDP) else int(inner.dataofs) * 4
        payload_start = _offset_of(raw, inner) + header
    if VXLAN in packet:
        row["vni"] = int(packet[VXLAN].vni)
        row["vxlan"] = True
        inner_l4_start = _offset_of(raw, l4s[-1]) if len(l4s) > 1 else len(raw)
        row["outer_proto"], row["outer_src_port"], row["outer_dst_port"] = row["proto"], row["src_port"], \
            row["dst_port"]
        if len(ips) > 1:
            row["proto"], row["src_port"], row["dst_port"] = row["app_proto"], row["app_src_port"], \
                row["app_dst_port"]
    bth_end = _offset_of(raw, packet[BTH]) + BTH_LEN if BTH in packet else len(raw) + 1
    if BTH in packet:
        row["bth_opcode"] = int(packet[BTH].opcode)
        row["dqpn"] = int(packet[BTH].dqpn)
    if MACControlClassBasedFlowControl in packet:
        pfc = packet[MACControlClassBasedFlowControl]
        row["pfc_enable"] = sum(1 << c for c in range(8) if getattr(pfc, f"c{c}_enabled"))
    return raw, row, payload_start, bth_end, inner_l4_start


DTYPES: dict[str, str] = {
    "ts_ns": "int64", "link": "int16", "direction": "int8", "erspan_session": "int16", "wire_len": "uint32",
    "vlan": "uint16", "ethertype": "uint16", "src_hi": "uint64", "src_lo": "uint64", "dst_hi": "uint64",
    "dst_lo": "uint64", "proto": "uint8", "src_port": "uint16", "dst_port": "uint16", "dscp": "uint8", "ecn": "uint8",
    "tcp_flags": "uint8", "vni": "uint32", "vxlan": "bool", "is_roce": "bool", "bth_opcode": "uint8", "dqpn": "uint32",
    "psn": "uint32", "fecn": "bool", "becn": "bool", "aeth_syndrome": "uint8", "pfc_enable": "uint8",
    "app_proto": "uint8", "app_src_port": "uint16", "app_dst_port": "uint16", "payload_offset": "int64",
    "payload_caplen": "int32", "capture_ts_ns": "int64", "switch_timed": "bool", "outer_src_hi": "uint64",
    "outer_src_lo": "uint64", "outer_dst_hi": "uint64", "outer_dst_lo": "uint64",
}


def decoded_batch(
    frames: list[Packet], snaplen: int | Sequence[int] | None = None
) -> tuple[np.ndarray, DecodedPackets]:
    """(batch buffer, decoded columns) of `frames`, each captured up to `snaplen` bytes (one or one per frame)."""
    snaplens = snaplen if isinstance(snaplen, Sequence) else [snaplen] * len(frames)
    dissected: dict[int, tuple[bytes, dict[str, int | bool], int, int, int]] = {}
    chunks: list[bytes] = []
    rows = []
    base = 0
    for frame, cut in zip(frames, snaplens, strict=True):
        if id(frame) not in dissected:
            dissected[id(frame)] = _columns(frame)
        raw, full_row, payload_start, bth_end, inner_l4_start = dissected[id(frame)]
        captured = raw[:cut]
        row = dict(full_row)
        if inner_l4_start and len(captured) < payload_start:
            # As the decoder: a VXLAN inner flow cut inside its L4 header has no ports; cut inside its IP
            # header, no protocol, and the outer flow is the key.
            row["app_src_port"] = row["app_dst_port"] = row["src_port"] = row["dst_port"] = 0
            if len(captured) < inner_l4_start:
                row["app_proto"] = 0
                row["proto"], row["src_port"], row["dst_port"] = row["outer_proto"], row["outer_src_port"], \
                    row["outer_dst_port"]
        row["is_roce"] = len(captured) >= bth_end
        if len(captured) > payload_start:
            row["payload_offset"] = base + payload_start
            row["payload_caplen"] = len(captured) - payload_start
        else:
            row["payload_offset"] = -1
        rows.append(row)
        chunks.append(captured)
        base += len(captured)
    columns = {name: np.array([row.get(name, 0) for row in rows], dtype=dtype) for name, dtype in DTYPES.items()}
    decoded = DecodedPackets(
        ok=np.ones(len(frames), dtype=bool),
        pfc_quanta=np.zeros((len(frames), 8), dtype=np.uint16),
        **columns,
    )
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).copy(), decoded
