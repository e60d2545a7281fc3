"""A flow's identity as one fixed-size numpy value, so batches can be matched, grouped and searched
vectorised: (src_ip, dst_ip, src_port, dst_port, proto, vlan, vni, roce_qp), the link left out.

IP columns hold the 16-byte addresses of pipeline/records.py; the key only needs them to be stable
bytes, and decodes them solely to print a flow for people.
"""

from __future__ import annotations

import ipaddress

import numpy as np

from pipeline.addresses import fixed16
from pipeline.detect.events import Batch
from pipeline.units import protocol_name

FLOW_KEY = np.dtype([
    ("src_ip", "S16"), ("dst_ip", "S16"), ("src_port", "<u2"), ("dst_port", "<u2"), ("proto", "u1"),
    ("vlan", "<u2"), ("vni", "<u4"), ("roce_qp", "<u4"),
])
KEY_COLUMNS: tuple[str, ...] = tuple(FLOW_KEY.names or ())


def flow_keys(batch: Batch) -> np.ndarray:
    """One opaque void value per row (comparable, sortable, usable with np.unique and np.isin)."""
    n = len(batch["src_port"])
    keys = np.empty(n, dtype=FLOW_KEY)
    for name in FLOW_KEY.names or ():
        keys[name] = fixed16(batch[name]).view("S16") if name in ("src_ip", "dst_ip") else batch[name]
    return keys.view(f"V{FLOW_KEY.itemsize}")


_MIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))  # MurmurHash3's 64-bit finaliser
_SHIFT = np.uint64(33)


def flow_hashes(batch: Batch) -> np.ndarray:
    """A 64-bit hash of each row's flow key (the fields of FLOW_KEY): sorting, grouping and matching integers
    is many times cheaper than 47-byte void values. Two flows share a hash with odds of about n²/2⁶⁵ (3e-8
    for a million flows)."""
    u64 = np.uint64
    words = [*_address_words(batch["src_ip"]), *_address_words(batch["dst_ip"]),
             batch["src_port"].astype(u64) | batch["dst_port"].astype(u64) << u64(16)
             | batch["proto"].astype(u64) << u64(32) | batch["vlan"].astype(u64) << u64(40),
             batch["vni"].astype(u64) | batch["roce_qp"].astype(u64) << u64(32)]
    hashes = np.zeros(len(batch["src_port"]), dtype=u64)
    for position, word in enumerate(words):
        hashes = _mix(hashes ^ (word + u64(position)))
    return hashes


def _address_words(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    words = fixed16(column).view("<u8").reshape(-1, 2)
    return words[:, 0], words[:, 1]


def _mix(value: np.ndarray) -> np.ndarray:
    """Every input bit flips each output bit with odds near 1/2 (fmix64)."""
    value = (value ^ (value >> _SHIFT)) * _MIX[0]
    value = (value ^ (value >> _SHIFT)) * _MIX[1]
    return value ^ (value >> _SHIFT)


def describe(key: np.void) -> str:
    """`src:port > dst:port udp [vlan V] [vni N] [qp Q]` for details and summaries (the protocol by name)."""
    row = np.frombuffer(key.tobytes(), dtype=FLOW_KEY)[0]
    text = (f"{_address(row['src_ip'])}:{row['src_port']} > {_address(row['dst_ip'])}:{row['dst_port']}"
            f" {protocol_name(int(row['proto']))}")
    for name in ("vlan", "vni", "roce_qp"):
        if row[name]:
            text += f" {'qp' if name == 'roce_qp' else name} {row[name]}"
    return text


def far_addresses(keys: np.ndarray, toward: np.ndarray) -> np.ndarray:
    """(n, 2) uint64 (high, low) words of each flow's destination where `toward`, else of its source: the
    form the topology's prefix table searches."""
    rows = np.frombuffer(np.ascontiguousarray(keys).tobytes(), dtype=FLOW_KEY)
    addresses = np.where(toward, rows["dst_ip"], rows["src_ip"]).astype("S16")
    return np.frombuffer(addresses.tobytes(), dtype=">u8").reshape(-1, 2).astype(np.uint64)


def _address(raw: bytes) -> str:
    packed = raw.ljust(16, b"\0")
    address = ipaddress.IPv6Address(packed)
    return str(address.ipv4_mapped or address)
