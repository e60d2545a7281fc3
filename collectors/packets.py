"""The two batch shapes every collector stage passes on: raw captured packets, and their decoded columns.

A batch never holds a Python object per packet: each field is one numpy column of length n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PacketBatch:
    """Captured frames: `data[offset[i] : offset[i] + caplen[i]]` is frame i as captured.

    `data` may be a view onto a memory-mapped file or a reused buffer; consumers copy what they keep.
    """

    data: np.ndarray  # uint8
    offset: np.ndarray  # int64, start of each frame in `data`
    caplen: np.ndarray  # uint32, captured bytes
    wirelen: np.ndarray  # uint32, original length of the captured frame (incl. any mirror encapsulation)
    ts_ns: np.ndarray  # int64, nanoseconds since the epoch
    interface: np.ndarray  # uint16, index into `interfaces`
    interfaces: tuple[str, ...]  # capture interface names ('' when the format has none)
    linktype: int = 1  # DLT/LINKTYPE of the frames (1 = Ethernet)

    def __len__(self) -> int:
        return len(self.offset)


@dataclass(frozen=True, slots=True)
class DecodedPackets:
    """Per-packet columns of the monitored frame (after ERSPAN/GRE decapsulation), aligned with a PacketBatch.

    IPs are v4-mapped IPv6 as (hi, lo) uint64 words (pipeline.addresses). Inside a GRE, IP-in-IP, VXLAN,
    Geneve or MPLS tunnel the flow key (addresses, ports, proto) is the inner flow's, with the tunnel's
    endpoints in `outer_*`; a tunnel whose inner frame is not IP (ARP, LLDP) leaves the outer flow as the key.
    `vni` holds the tunnel id and `app_*` and `payload_*` describe the innermost L4 flow for DPI.
    Fields a packet does not have are 0 (or -1 / 0xFF where 0 is a valid value, as noted).
    """

    ok: np.ndarray  # bool, False for malformed packets (counted and skipped by every later stage)
    ts_ns: np.ndarray  # int64, packet time: the switch's ERSPAN III timestamp where present, else capture time
    capture_ts_ns: np.ndarray  # int64, when the collector's capture received the packet
    switch_timed: np.ndarray  # bool, ts_ns is the switch's timestamp
    link: np.ndarray  # int16, index into Topology.links, -1 when not attributable
    direction: np.ndarray  # int8, pipeline.topology UNKNOWN/UP/DOWN
    erspan_session: np.ndarray  # int16, -1 when not mirrored via ERSPAN
    wire_len: np.ndarray  # uint32, original monitored frame length (DESIGN.md section 5 `bytes`)
    vlan: np.ndarray  # uint16, 802.1Q VID of the monitored frame, 0 when untagged
    ethertype: np.ndarray  # uint16, after VLAN tags
    src_hi: np.ndarray  # uint64
    src_lo: np.ndarray  # uint64
    dst_hi: np.ndarray  # uint64
    dst_lo: np.ndarray  # uint64
    proto: np.ndarray  # uint8, IP protocol (0 for non-IP)
    outer_src_hi: np.ndarray  # uint64, a tunnel's outer source when the flow is its inner flow, else 0
    outer_src_lo: np.ndarray  # uint64
    outer_dst_hi: np.ndarray  # uint64
    outer_dst_lo: np.ndarray  # uint64
    src_port: np.ndarray  # uint16
    dst_port: np.ndarray  # uint16 (non-IP frames: 0; the flow key puts the EtherType here)
    dscp: np.ndarray  # uint8
    ecn: np.ndarray  # uint8, 0 not-ECT, 1 ECT(1), 2 ECT(0), 3 CE
    tcp_flags: np.ndarray  # uint8
    vni: np.ndarray  # uint32, tunnel id: VXLAN/Geneve VNI, GRE key, MPLS bottom label; 0 when none
    vxlan: np.ndarray  # bool, carried in VXLAN (DPI labels it `vxlan`, naming the inner app in the detail)
    is_roce: np.ndarray  # bool, RoCEv2 BTH present (UDP dport 4791)
    bth_opcode: np.ndarray  # uint8
    dqpn: np.ndarray  # uint32, BTH destination QP
    psn: np.ndarray  # uint32
    fecn: np.ndarray  # bool
    becn: np.ndarray  # bool
    aeth_syndrome: np.ndarray  # uint8, 0xFF when no AETH
    pfc_enable: np.ndarray  # uint8, PFC class-enable vector, 0 when not a PFC frame
    pfc_quanta: np.ndarray  # (n, 8) uint16 pause quanta per priority
    app_proto: np.ndarray  # uint8, innermost IP protocol (== proto unless a tunnel's inner frame is not IP)
    app_src_port: np.ndarray  # uint16, innermost L4 ports
    app_dst_port: np.ndarray  # uint16
    payload_offset: np.ndarray  # int64, start of the innermost L4 payload in the batch's `data`, -1 if none
    payload_caplen: np.ndarray  # int32, payload bytes actually captured (may be < the real payload)

    def __len__(self) -> int:
        return len(self.ok)
