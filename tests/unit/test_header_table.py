"""The field tables against scapy's layers, an independent transcription of the same specs: each field's
bits, found by flipping the field in scapy and diffing the bytes, must be where the table's offset and mask
say; each header's size must be the length scapy writes."""

from __future__ import annotations

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS
from scapy.contrib.roce import AETH, BTH
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, raw

from collectors import header_table as h

# (table, scapy layer, {table field: scapy field}); BTH's icrc is a trailer, not part of the header
CASES: list[tuple[str, type[Packet], dict[str, str]]] = [
    ("ethernet", Ether, {"ethertype": "type"}),
    ("dot1q", Dot1Q, {"vid": "vlan", "pcp": "prio", "ethertype": "type"}),
    ("mpls", MPLS, {"label": "label", "bottom_of_stack": "s", "ttl": "ttl"}),
    ("ipv4", IP, {"ihl": "ihl", "total_length": "len", "fragment_offset": "frag", "protocol": "proto",
                  "source": "src", "destination": "dst"}),
    ("ipv6", IPv6, {"traffic_class": "tc", "payload_length": "plen", "next_header": "nh", "source": "src",
                    "destination": "dst"}),
    ("tcp", TCP, {"source_port": "sport", "destination_port": "dport", "data_offset": "dataofs", "window": "window"}),
    ("udp", UDP, {"source_port": "sport", "destination_port": "dport", "length": "len"}),
    ("erspan_ii", ERSPAN_II, {"session_id": "session_id", "vlan": "vlan", "index": "index"}),
    ("erspan_iii", ERSPAN_III, {"session_id": "session_id", "timestamp": "timestamp", "granularity": "gra",
                                "optional": "o", "direction": "d"}),
    ("vxlan", VXLAN, {"vni": "vni"}),
    ("geneve", GENEVE, {"options_length": "optionlen", "protocol_type": "proto", "vni": "vni"}),
    ("bth", BTH, {"opcode": "opcode", "fecn": "fecn", "becn": "becn", "destination_qp": "dqpn", "psn": "psn",
                  "partition_key": "pkey"}),
    ("aeth", AETH, {"syndrome": "syndrome", "msn": "msn"}),
    ("linux_sll", CookedLinux, {"protocol": "proto", "packet_type": "pkttype"}),
    ("linux_sll2", CookedLinuxV2, {"protocol": "proto", "interface_index": "ifindex"}),
]
FIXED: dict[type[Packet], dict[str, object]] = {  # computed fields pinned, so only the flipped field differs
    IP: {"chksum": 0, "len": 20, "ihl": 5, "src": "10.0.0.1", "dst": "10.0.0.2"},
    IPv6: {"plen": 0, "src": "fd00::1", "dst": "fd00::2"}, TCP: {"chksum": 0, "dataofs": 5},
    UDP: {"chksum": 0, "len": 8}, BTH: {"icrc": 0},
}
TRAILER = {BTH: 4}  # scapy's BTH carries the ICRC, which follows the payload on the wire


def _field_bits(layer: type[Packet], name: str) -> int:
    field = layer().get_field(name)
    size = getattr(field, "size", None)
    return int(size) if isinstance(size, int) and size > 0 else field.sz * 8


def _as_int(layer: type[Packet], **fields: object) -> int:
    return int.from_bytes(raw(layer(**{**FIXED.get(layer, {}), **fields})), "big")


@pytest.mark.parametrize(("header", "layer", "names"), CASES, ids=[case[0] for case in CASES])
def test_fields_sit_where_scapy_puts_them(header: str, layer: type[Packet], names: dict[str, str]) -> None:
    total = h.size(header) * 8
    assert len(raw(layer(**FIXED.get(layer, {})))) - TRAILER.get(layer, 0) == h.size(header)
    for ours, theirs in names.items():
        bits = _field_bits(layer, theirs)
        ones = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" if layer is IPv6 else "255.255.255.255"
        zero_value, ones_value = ("::" if layer is IPv6 else "0.0.0.0", ones) if theirs in ("src", "dst") \
            else (0, (1 << bits) - 1)
        diff = (_as_int(layer, **{theirs: zero_value}) ^ _as_int(layer, **{theirs: ones_value})) \
            >> (TRAILER.get(layer, 0) * 8)
        start, width = h.bits(header, ours)
        assert width == bits, f"{header}.{ours}"
        assert diff == ((1 << width) - 1) << (total - start - width), f"{header}.{ours}"


def test_masks_select_the_field_in_its_word() -> None:
    assert h.mask("erspan_ii", "session_id", 2) == (0x03FF, 0)
    assert h.mask("erspan_iii", "granularity", 1) == (0x06, 1)
    assert h.mask("erspan_iii", "optional", 1) == (0x01, 0)
    assert h.mask("dot1q", "vid", 2) == (0x0FFF, 0)
    assert h.mask("ipv4", "fragment_offset", 2) == (0x1FFF, 0)
    assert h.mask("bth", "fecn", 1) == (0x80, 7)
    with pytest.raises(ValueError):
        h.mask("ipv4", "source", 2)
