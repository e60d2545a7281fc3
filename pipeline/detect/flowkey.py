"""A flow's identity as one fixed-size numpy value, so batches can be matched, grouped and searched
vectorised: (src_ip, dst_ip, src_port, dst_port, proto, vlan, vni, roce_qp), the link left out.

IP columns hold the 16-byte addresses of pipeline/records.py; the key only needs them to be stable
bytes, and decodes them solely to print a flow for people.
"""

from __future__ import annotations

import ipaddress

import numpy as np

from pipeline.detect.events import Batch
from pipeline.units import protocol_name

FLOW_KEY = np.dtype([
    ("src_ip", "S16"), ("dst_ip", "S16"), ("src_port", "<u2"), ("dst_port", "<u2"), ("proto", "u1"),
    ("vlan", "<u2"), ("vni", "<u4"), ("roce_qp", "<u4"),
])


def flow_keys(batch: Batch) -> np.ndarray:
    """One opaque void value per row (comparable, sortable, usable with np.unique and np.isin)."""
    n = len(batch["src_port"])
    keys = np.empty(n, dtype=FLOW_KEY)
    for name in FLOW_KEY.names or ():
        keys[name] = batch[name]
    return keys.view(f"V{FLOW_KEY.itemsize}")


def describe(key: np.void) -> str:
    """`src:port > dst:port udp [vlan V] [vni N] [qp Q]` for details and summaries (the protocol by name)."""
    row = np.frombuffer(key.tobytes(), dtype=FLOW_KEY)[0]
    text = (f"{_address(row['src_ip'])}:{row['src_port']} > {_address(row['dst_ip'])}:{row['dst_port']}"
            f" {protocol_name(int(row['proto']))}")
    for name in ("vlan", "vni", "roce_qp"):
        if row[name]:
            text += f" {'qp' if name == 'roce_qp' else name} {row[name]}"
    return text


def _address(raw: bytes) -> str:
    packed = raw.ljust(16, b"\0")
    address = ipaddress.IPv6Address(packed)
    return str(address.ipv4_mapped or address)
