"""Which of N collector workers takes a packet: a hash of its flow that both directions share.

Everything a worker keeps per flow (the flow table's rows, PSN and pause state, DPI labels, Wireshark's
samples) must see all of that flow's packets, on every link it crosses, so the key is the flow without the
link and without direction: the two (address, port) ends as an unordered pair, the protocol, VLAN and VNI.
Frames without IP (PFC pauses, LLDP, ARP) have no flow of their own and go by their link; malformed packets
to worker 0 (they are counted by the worker that decoded them, collectors.shard_exchange). What spans flows
(link bins, DFI's jobs and iterations) is merged by whoever reads the workers (collectors.workers).
"""

from __future__ import annotations

import numpy as np

from collectors import protocols
from collectors.packets import DecodedPackets

_MIX = np.uint64(0x9E3779B97F4A7C15)
_FINAL = np.uint64(0xBF58476D1CE4E5B9)


def _mixed(value: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves about half the output bits."""
    value = value ^ (value >> np.uint64(30))
    value = value * _FINAL
    return value ^ (value >> np.uint64(31))


def _end(hi: np.ndarray, lo: np.ndarray, port: np.ndarray) -> np.ndarray:
    return _mixed(_mixed(hi ^ _mixed(lo)) ^ port.astype(np.uint64))


def shard_of(decoded: DecodedPackets, count: int) -> np.ndarray:
    """Worker index (0..count-1) of every packet (see the module docstring)."""
    if count == 1:
        return np.zeros(len(decoded), dtype=np.int64)
    ends = _end(decoded.src_hi, decoded.src_lo, decoded.src_port) + _end(decoded.dst_hi, decoded.dst_lo,
                                                                        decoded.dst_port)  # order-free
    flow = _mixed(ends ^ (decoded.proto.astype(np.uint64) * _MIX)
                  ^ (decoded.vlan.astype(np.uint64) << np.uint64(8)) ^ (decoded.vni.astype(np.uint64) << np.uint64(24)))
    ip = (decoded.ethertype == protocols.ETH_IPV4) | (decoded.ethertype == protocols.ETH_IPV6)
    by_link = _mixed(decoded.link.astype(np.int64).astype(np.uint64) + _MIX)
    shard = (np.where(ip, flow, by_link) % np.uint64(count)).astype(np.int64)
    shard[~decoded.ok] = 0
    return shard
